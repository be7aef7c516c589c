"""Run by test_slurm.py: `fit` whose final validation waits at its start until MARKER's folder holds
`signalled` (the test sends the requeue signal when it sees MARKER), so the signal lands inside the
final validation. Only the first attempt waits (MARKER is left behind).
usage: python tests/slow_validation_fit.py MARKER key=value ...
"""
import sys
import time
from pathlib import Path

import lightning as L

from hm_talker.training.fit import fit


class WaitInFinalValidation(L.Callback):
    def __init__(self, marker: Path):
        self.marker = marker

    def on_validation_start(self, trainer, pl_module):
        if trainer.state.fn != "validate" or self.marker.exists():
            return
        self.marker.write_text(str(trainer.global_step))
        deadline = time.time() + 120
        while not (self.marker.parent / "signalled").exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the signal is delivered to the task by now


if __name__ == "__main__":
    fit(None, sys.argv[2:], False, callbacks=[WaitInFinalValidation(Path(sys.argv[1]))])
