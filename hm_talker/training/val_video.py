"""Validation video: generated | real | |difference| x `diff_gain`, side by side, with the sound.

Written to RUN_DIR/val/step_NNNNNN.mp4 at every validation (rank 0) and logged to W&B as a video,
with an image grid of four of its rows.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from hm_talker.video_writer import VideoWriter


class ValidationVideo(L.Callback):
    def __init__(self, out_dir: Path, fps: int = 25, diff_gain: float = 4.0, identity: Path | None = None):
        self.out_dir, self.fps, self.diff_gain, self.identity = Path(out_dir), fps, diff_gain, identity
        self.rows: list[np.ndarray] = []
        self.frames: list[int] = []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.rows, self.frames = [], []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.is_global_zero or not isinstance(outputs, dict) or "rgb" not in outputs:
            return
        pred = outputs["rgb"].detach().float().clamp(0, 1).cpu()
        real = batch["image"].float().cpu()
        diff = ((pred - real).abs() * self.diff_gain).clamp(0, 1)
        row = torch.cat([pred, real, diff], dim=-1)  # [B, 3, H, 3W]
        self.rows.append((row * 255).round().byte().permute(0, 2, 3, 1).numpy())
        self.frames += batch["frame"].tolist()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or not self.rows:
            return
        frames = np.concatenate(self.rows)
        with VideoWriter(self.out_dir / f"step_{trainer.global_step:06d}.mp4", frames.shape[2], frames.shape[1],
                         self.fps, self._audio()) as video:
            video.write(frames)
        path = video.path
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "log"):
            import wandb

            grid = np.concatenate(list(np.concatenate(self.rows)[:: max(1, len(self.frames) // 4)][:4]), axis=0)
            experiment.log({"val/video": wandb.Video(str(path), format="mp4"),
                            "val/grid": wandb.Image(grid, caption="generated | real | difference"),
                            "trainer/global_step": trainer.global_step})

    def _audio(self) -> np.ndarray | None:
        """The held-out frames' own sound (from the identity's audio.wav), when contiguous."""
        if self.identity is None or not self.frames:
            return None
        if self.frames != list(range(self.frames[0], self.frames[0] + len(self.frames))):
            return None
        from hm_talker.driving.speech import sound_of_frames

        return sound_of_frames(self.identity, self.fps, self.frames[0], self.frames[-1])
