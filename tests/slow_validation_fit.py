"""Run by test_slurm.py: `fit` whose first validation of the chosen kind waits at its start until MARKER's
folder holds `signalled` (the test sends the requeue signal when it sees MARKER), so the signal lands inside
that validation. KIND: `final` (the validation after training) or `periodic` (the first one inside training,
not the sanity check). Only the first attempt waits (MARKER is left behind).
usage: python tests/slow_validation_fit.py MARKER KIND key=value ...
"""
import sys
import time
from pathlib import Path

import lightning as L

from hm_talker.training.fit import fit


class WaitInValidation(L.Callback):
    def __init__(self, marker: Path, kind: str):
        if kind not in ("final", "periodic"):
            raise SystemExit(f"KIND must be final or periodic, not {kind!r}")
        self.marker, self.fn = marker, "validate" if kind == "final" else "fit"

    def on_validation_start(self, trainer, pl_module):
        if trainer.state.fn != self.fn or trainer.sanity_checking or self.marker.exists():
            return
        self.marker.write_text(str(trainer.global_step))
        deadline = time.time() + 120
        while not (self.marker.parent / "signalled").exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the signal is delivered to the task by now


if __name__ == "__main__":
    fit(None, sys.argv[3:], False, callbacks=[WaitInValidation(Path(sys.argv[1]), sys.argv[2])])
