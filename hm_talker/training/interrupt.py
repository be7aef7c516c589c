"""Ctrl-C / SIGTERM during `fit`: finish the current step, save checkpoints/last.ckpt, stop cleanly.

The first signal only sets a flag (the step in flight completes, so the checkpoint is consistent);
the checkpoint callback then saves at the end of training and `fit` raises `Interrupted`, which the
CLI reports with the `--resume` line. A second signal aborts at once (the default behaviour).
"""
from __future__ import annotations

import signal
import threading

import lightning as L

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulInterrupt(L.Callback):
    def __init__(self) -> None:
        self.signal: int | None = None  # the signal this process received, None while running normally
        self.stopped = False  # training stopped because some rank received a signal
        self._previous: dict = {}

    def on_train_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for s in SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # second signal: give up gracefully stopping
            self._restore()
            raise KeyboardInterrupt
        self.signal = signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # any rank signalled -> every rank stops after this step (a lone rank stopping would hang DDP)
        if trainer.strategy.reduce_boolean_decision(self.signal is not None, all=False):
            self.stopped = True
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()

    def _restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}
