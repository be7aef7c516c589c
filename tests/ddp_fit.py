"""Run by test_fit.py: `fit` with trainer.devices=2 (real DDP, gloo on the CPU); every rank writes the
sum of each of its parameters to OUT/rank{r}.json at the end, to check the replicas stayed equal
(and its world size and SLURM node to OUT/rank{r}.where.json, and the val/... metrics it logged at
each validation to OUT/rank{r}.val.json).
usage: python tests/ddp_fit.py OUT key=value ...
"""
import json
import os
import sys
from pathlib import Path

import lightning as L

from hm_talker.training.fit import fit


class DumpParams(L.Callback):
    def __init__(self, out: Path):
        self.out = out

    def on_train_end(self, trainer, pl_module):
        sums = {k: float(v.double().sum()) for k, v in pl_module.state_dict().items() if v.is_floating_point()}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(sums))
        where = {"world_size": trainer.world_size, "node": os.environ.get("SLURMD_NODENAME", ""),
                 "num_nodes": trainer.num_nodes}
        (self.out / f"rank{trainer.global_rank}.where.json").write_text(json.dumps(where))


class DumpValidation(L.Callback):
    """The val/... metrics this rank logged, per validation (after the lip-sync callback logged them)."""

    def __init__(self, out: Path):
        self.out, self.seen = out, []

    def on_validation_end(self, trainer, pl_module):
        self.seen.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
        (self.out / f"rank{trainer.global_rank}.val.json").write_text(json.dumps(self.seen))


if __name__ == "__main__":
    import logging

    from hm_talker.log_setup import setup_logging

    setup_logging(logging.INFO)  # as the CLI: the stage-1 lines show who trained it
    out = Path(sys.argv[1])
    fit(None, sys.argv[2:], False, callbacks=[DumpParams(out), DumpValidation(out)])
