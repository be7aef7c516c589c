"""TalkingHeadDataModule: training batches from the shards of one preprocessed identity."""
from __future__ import annotations

import json
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
                 shuffle_buffer: int = 128, seed: int = 0, val_batch_size: int = 8, speech_window: int = 16):
        super().__init__()
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
        with np.load(self.root / "features.npz", allow_pickle=False) as f:
            self.arrays = {k: f[k] for k in f.files}
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
        counter = stages.CorruptCounter()
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
        urls, _ = self._shards("val")
        counter = stages.CorruptCounter()
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
    root = Path(root)
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise InputError(root, "not a preprocessed identity (no manifest.json): run hm-talker preprocess")
    m = json.loads(mpath.read_text())
    if not m.get("format", "").startswith("hm-talker-shards/"):
        raise InputError(mpath, f"unknown shard format {m.get('format')!r}")
    missing = [s["name"] for sp in m["shards"].values() for s in sp if not (root / s["name"]).is_file()]
    if missing:
        raise InputError(root, f"{len(missing)} shard(s) listed in manifest.json are missing, e.g. {missing[0]}")
    return m
