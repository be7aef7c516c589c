"""Run by test_datamodule.py as a real 2-process Lightning DDP job (gloo on the CPU).

Each rank records the frames of every batch it trains on; rank files go to OUT/rank{r}.json.
usage: python tests/ddp_frames.py ROOT OUT
"""
import json
import sys
from pathlib import Path

import lightning as L
import torch

from datamodules import TalkingHeadDataModule


class Recorder(L.LightningModule):
    def __init__(self, out: Path):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.out, self.frames = out, {}

    def training_step(self, batch, _):
        self.frames.setdefault(self.current_epoch, []).append(batch["frame"].tolist())
        return (self.w * batch["image"].mean()).sum()

    def on_train_end(self):
        (self.out / f"rank{self.global_rank}.json").write_text(json.dumps(self.frames))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


if __name__ == "__main__":
    root, out = sys.argv[1], Path(sys.argv[2])
    dm = TalkingHeadDataModule(root, batch_size=4, num_workers=2, seed=3)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Recorder(out), datamodule=dm)
