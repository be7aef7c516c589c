"""Lip sync in every validation of a fit: the val/... scores of hm_talker/evaluation/validation.py,
logged to the run's own W&B run and returned by the final validation into summary.json.

Rank zero scores (mediapipe and the driven videos are not worth repeating per rank) and broadcasts the
numbers, so every DDP rank logs the same values. The cross-driven videos are kept in RUN_DIR/val/ and
logged to W&B beside the held-out video.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L


class LipSyncValidation(L.Callback):
    def __init__(self, root: Path, manifest: dict, references: list, out_dir: Path, deaf_control: bool = False):
        self.root, self.manifest, self.references = Path(root), manifest, references
        self.out_dir, self.deaf_control = Path(out_dir), deaf_control
        self.last: dict[str, float] = {}  # the scores of the latest validation
        self.last_step = -1  # its global step

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        fresh = trainer.global_step != self.last_step  # fit's final validation repeats the last step's
        scores = None if fresh else self.last
        if fresh and trainer.is_global_zero:
            from hm_talker.evaluation.validation import validation_scores

            scores = validation_scores(pl_module, self.root, self.manifest, self.references, self.out_dir,
                                       trainer.global_step, self.deaf_control)
        if fresh:
            scores = trainer.strategy.broadcast(scores, src=0)
        self.last, self.last_step = scores, trainer.global_step
        for key, value in scores.items():
            pl_module.log(key, value, sync_dist=False)  # equal on every rank: no reduction needed
        if fresh and trainer.is_global_zero:
            self._log_videos(trainer)

    def _log_videos(self, trainer) -> None:
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "log"):
            return
        import wandb

        videos = sorted(self.out_dir.glob(f"step_{trainer.global_step:06d}_cross-*.mp4"))
        if videos:
            experiment.log({f"val/cross_video/{p.stem.split('_cross-', 1)[1]}": wandb.Video(str(p), format="mp4")
                            for p in videos} | {"trainer/global_step": trainer.global_step})
