"""TalkingHeadDataModule: training batches from the shards of one preprocessed identity."""
from __future__ import annotations

import logging
import multiprocessing as mp
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
import webdataset as wds

from datamodules import stages
from hm_talker.errors import InputError

log = logging.getLogger("hm_talker")


class EpochLoader(wds.WebLoader):
    """A WebLoader that tells the shard stage which epoch starts, before its workers fork."""

    def __init__(self, dataset, epoch, epoch_fn, **kw):
        super().__init__(dataset, **kw)
        self._epoch, self._epoch_fn, self._count = epoch, epoch_fn, 0

    def __iter__(self):
        e = self._epoch_fn()
        self._epoch.value = self._count if e is None else e
        self._count += 1
        return super().__iter__()


def speech_features(manifest: dict, arrays: dict, window: int) -> tuple:
    """(speech [T, k, 2], window) for CMMM: energy and flux of the identity's log-mel, normalised per
    clip (hm_talker/preprocess/speech_features.py); (None, 0) without mel features or a window."""
    if window <= 0 or manifest["features"]["audio"]["kind"] != "mel":
        return None, 0
    from hm_talker.preprocess.speech_features import mouth_audio_features

    return mouth_audio_features(arrays["audio"], "energy", arrays["clip_ids"]), window


def lip_motion(arrays: dict, size: int) -> np.ndarray:  # -> [T, L, 3]
    """Displacement of the lower-face landmarks (lips, jaw) from the identity's mean shape, per frame,
    in the head frame (pose removed by the same similarity fit as preprocessing; eye distance 1)."""
    from hm_talker.constants import LOWER_FACE_LANDMARKS
    from hm_talker.preprocess.pose import head_poses

    shape = arrays["mean_shape"]
    canon = head_poses(arrays["landmarks"], shape, size, 2.0, 0.0)[2]  # focal does not change `canon`
    return (canon[:, LOWER_FACE_LANDMARKS] - shape[LOWER_FACE_LANDMARKS]).astype(np.float32)


class TalkingHeadDataModule(L.LightningDataModule):
    """Batches of frames with their audio-feature and AU windows.

    Train: shards split over (rank x worker) readers, reshuffled each epoch, a shuffle buffer, and
    the same number of batches on every rank (`with_epoch`). Up to one shard's worth of frames per
    reader may sit out an epoch when the shards do not divide evenly; which ones changes per epoch.
    Val: the held-out tail in frame order (one reader, every rank), for metrics and videos.
    """

    def __init__(self, root: str, batch_size: int = 4, num_workers: int = 2, window: int = 8,
                 shuffle_buffer: int = 128, seed: int = 0, val_batch_size: int = 8, speech_window: int = 16,
                 max_corrupt_fraction: float = 0.5, corrupt_warnings: int = 5):
        super().__init__()
        self.max_corrupt_fraction, self.corrupt_warnings = max_corrupt_fraction, corrupt_warnings
        self.root = Path(root)
        self.batch_size, self.num_workers, self.window = batch_size, num_workers, window
        self.speech_window = speech_window  # frames of speech features for CMMM (0: none)
        self.shuffle_buffer, self.seed, self.val_batch_size = shuffle_buffer, seed, val_batch_size
        self.manifest: dict | None = None
        self._epoch = mp.Value("i", 0)

    # --- reading the identity -------------------------------------------------------------
    def prepare_data(self):
        load_manifest(self.root)

    def setup(self, stage: str | None = None):
        self.manifest = load_manifest(self.root)
        self.arrays = load_features(self.root)
        self.windows = stages.Windows(self.arrays["audio"], self.arrays["aus"], self.arrays["clip_ids"],
                                      self.window, *speech_features(self.manifest, self.arrays, self.speech_window),
                                      lip_motion=lip_motion(self.arrays, int(self.manifest["size"])))

    @property
    def world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.world_size if trainer is not None else stages.rank_world()[1]

    def _shards(self, split: str) -> tuple[list[str], list[int]]:
        items = self.manifest["shards"][split]
        return [str(self.root / s["name"]) for s in items], [s["num_samples"] for s in items]

    @property
    def readers(self) -> int:
        return self.world_size * max(1, self.num_workers)

    def stride_mode(self) -> bool:
        """Fewer shards than readers: split by sample instead of by shard (every reader reads all)."""
        return len(self._shards("train")[1]) < self.readers

    def train_batches_per_reader(self) -> int:
        _, sizes = self._shards("train")
        if self.stride_mode():
            return sum(sizes) // self.readers // self.batch_size
        return stages.reader_quota(sizes, self.readers) // self.batch_size

    # --- loaders ------------------------------------------------------------------------------
    def train_pipeline(self) -> wds.DataPipeline:
        urls, sizes = self._shards("train")
        nb = self.train_batches_per_reader()
        if nb == 0:
            raise InputError(self.root, "too few train frames per reader for one batch")
        counter = stages.CorruptCounter(nb * self.batch_size, self.max_corrupt_fraction,
                                        self.corrupt_warnings, self.root)
        stride = self.stride_mode()
        return wds.DataPipeline(
            stages.EpochShards(urls, sizes, self.seed, self._epoch, stride=stride),
            wds.tarfile_to_samples(handler=counter),
            *([stages.stride_samples] if stride else []),
            partial(stages.decode, counter=counter),
            stages.SeededShuffle(self.shuffle_buffer, 32, self.seed, self._epoch),
            self.windows,
            partial(stages.exact_count, quota=nb * self.batch_size),
            wds.batched(self.batch_size, collation_fn=stages.collate, partial=False),
        ).with_epoch(nb)

    def train_dataloader(self):
        trainer = getattr(self, "trainer", None)
        epoch_fn = (lambda: trainer.current_epoch) if trainer is not None else (lambda: None)
        return EpochLoader(self.train_pipeline(), self._epoch, epoch_fn, batch_size=None,
                           num_workers=self.num_workers, persistent_workers=False,
                           pin_memory=torch.cuda.is_available())

    def val_pipeline(self) -> wds.DataPipeline:
        urls, sizes = self._shards("val")
        counter = stages.CorruptCounter(sum(sizes), self.max_corrupt_fraction, self.corrupt_warnings, self.root)
        return wds.DataPipeline(
            wds.SimpleShardList(urls),
            wds.tarfile_to_samples(handler=counter),
            partial(stages.decode, counter=counter),
            self.windows,
            wds.batched(self.val_batch_size, collation_fn=stages.collate, partial=True),
        )

    def val_dataloader(self):
        # one worker keeps frame order; every rank sees every val frame (a small tail)
        return wds.WebLoader(self.val_pipeline(), batch_size=None, num_workers=min(1, self.num_workers))


def load_manifest(root) -> dict:
    """The identity's manifest.json, checked: ours, well-formed, every listed shard present."""
    from hm_talker.safe_read import read_json

    root = Path(root)
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise InputError(root, "not a preprocessed identity (no manifest.json): run hm-talker preprocess")
    m = read_json(mpath, "manifest.json")
    if not isinstance(m, dict) or not str(m.get("format", "")).startswith("hm-talker-shards/"):
        got = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise InputError(mpath, f"not an hm-talker manifest (format {got!r})")
    try:
        check_manifest(m)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(mpath, f"malformed manifest ({type(exc).__name__}: {exc})") from None
    missing = [s["name"] for sp in m["shards"].values() for s in sp if not (root / s["name"]).is_file()]
    if missing:
        raise InputError(root, f"{len(missing)} shard(s) listed in manifest.json are missing, e.g. {missing[0]}")
    return m


def check_manifest(m: dict) -> None:
    """The fields the loaders read, with their types; shard names are plain file names."""
    for key in ("num_frames", "fps", "sample_rate", "size"):
        if not isinstance(m[key], int) or isinstance(m[key], bool) or m[key] <= 0:
            raise ValueError(f"{key} must be a positive integer")
    for split in ("train", "val"):
        for s in m["shards"][split]:
            name = s["name"]
            if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
                raise ValueError(f"shard name {name!r} is not a plain file name")
            if not isinstance(s["num_samples"], int) or not isinstance(s["start"], int) or s["num_samples"] < 0:
                raise ValueError(f"shard {name}: start / num_samples must be integers")
    shape = m["features"]["audio"]["shape"]
    if len(shape) != 2 or not all(isinstance(v, int) for v in shape):
        raise ValueError("features.audio.shape must be two integers")
    if not isinstance(m["config"], dict):
        raise ValueError("config must be an object")


FEATURE_KEYS = ("audio", "aus", "landmarks", "extrinsics", "intrinsics", "clip_ids", "mean_shape")


def load_features(root) -> dict[str, np.ndarray]:
    """features.npz of an identity (no pickles), every array finite; defects -> InputError naming it."""
    path = Path(root) / "features.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise InputError(path, "missing (re-run hm-talker preprocess)") from None
    except Exception as exc:  # truncated zip, object arrays, not an npz
        raise InputError(path, f"unreadable features ({type(exc).__name__})") from None
    missing = [k for k in FEATURE_KEYS if k not in arrays]
    if missing:
        raise InputError(path, f"missing arrays: {', '.join(missing)}")
    bad = [k for k, a in arrays.items() if a.dtype.kind in "fc" and not np.isfinite(a).all()]
    if bad:
        raise InputError(path, f"non-finite values (NaN or inf) in {', '.join(bad)}")
    return arrays
