"""RUN_DIR/checkpoints/last.ckpt, written atomically (temp file, then os.replace): every
`trainer.checkpoint_every` steps, at the last step, and when training stops early."""
from __future__ import annotations

import os
from pathlib import Path

import lightning as L

from hm_talker.training.run import LAST


class AtomicLastCheckpoint(L.Callback):
    """Saved from on_train_batch_end (as Lightning's ModelCheckpoint does) so that a resume continues
    inside the same epoch, with the train loader fast-forwarded (datamodules' ResumableLoader)."""

    def __init__(self, dirpath: Path, every: int) -> None:
        self.dirpath, self.every = Path(dirpath), every
        self.saved_step = -1

    def save(self, trainer) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        tmp = self.dirpath / f".{LAST}.tmp-{os.getpid()}"
        # weights_only=False: a full checkpoint (optimiser, loops); every rank calls it, rank 0 writes
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, self.dirpath / LAST)  # atomic: readers never see a partial file
        trainer.strategy.barrier()
        self.saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if (self.every > 0 and step % self.every == 0) or step >= trainer.max_steps:
            self.save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.saved_step != trainer.global_step:  # stopped early (e.g. should_stop)
            self.save(trainer)
