"""TalkingHeadDataModule: training batches from the shards of one preprocessed identity."""
from __future__ import annotations

import logging
import multiprocessing as mp
from functools import partial
from pathlib import Path

import lightning as L
import torch
import webdataset as wds

from datamodules import stages
from hm_talker.data.identity import load_features, load_manifest
from hm_talker.data.windows import Windows, lip_motion, speech_features
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


class ResumableLoader:
    """Wraps the train loader so Lightning saves / restores the position inside the epoch.

    The shard loader is not resumable by itself; the order of an epoch is a function of
    (seed, epoch), so resuming re-reads the epoch and skips the batches already trained on.
    """

    def __init__(self, loader, trainer_fn) -> None:
        self.loader, self.trainer_fn, self._skip = loader, trainer_fn, 0

    def __len__(self) -> int:
        return len(self.loader)  # TypeError when the wrapped loader has no length, as it would

    def __iter__(self):
        skip, self._skip = self._skip, 0
        for i, batch in enumerate(self.loader):
            if i >= skip:
                yield batch

    def state_dict(self) -> dict:
        trainer = self.trainer_fn()
        # batches that entered training steps this epoch (not the one the fetcher prefetched)
        return {"consumed": int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)}

    def load_state_dict(self, state: dict) -> None:
        self._skip = int(state.get("consumed", 0))


class TalkingHeadDataModule(L.LightningDataModule):
    """Batches of frames with their audio-feature and AU windows.

    Train: shards split over (rank x worker) readers, reshuffled each epoch, a shuffle buffer, and
    the same number of batches on every rank (`with_epoch`). Up to one shard's worth of frames per
    reader may sit out an epoch when the shards do not divide evenly; which ones changes per epoch.
    Val: the held-out tail in frame order (one reader, every rank), for metrics and videos.
    """

    def __init__(self, root: str, batch_size: int = 4, num_workers: int = 2, window: int = 8,
                 shuffle_buffer: int = 128, seed: int = 0, val_batch_size: int = 8, speech_window: int = 16,
                 max_corrupt_fraction: float = 0.5, corrupt_warnings: int = 5, formants: bool | None = None):
        super().__init__()
        self.formants = formants  # the formant rows in the speech window: True (required), None (when stored), False
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
        self.windows = Windows(self.arrays["audio"], self.arrays["aus"], self.arrays["clip_ids"], self.window,
                               *speech_features(self.manifest, self.arrays, self.speech_window, self.formants),
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
        """The train loader; inside a Trainer it resumes within an epoch (ResumableLoader)."""
        trainer = getattr(self, "trainer", None)
        epoch_fn = (lambda: trainer.current_epoch) if trainer is not None else (lambda: None)
        loader = EpochLoader(self.train_pipeline(), self._epoch, epoch_fn, batch_size=None,
                             num_workers=self.num_workers, persistent_workers=False,
                             pin_memory=torch.cuda.is_available())
        return ResumableLoader(loader, lambda: self.trainer) if trainer is not None else loader

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
