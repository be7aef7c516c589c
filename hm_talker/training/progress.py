"""Training progress on stdout: step, steps/s, loss, PSNR and time left.

On a terminal one line is rewritten in place (at most every `refresh_s` seconds); otherwise
(SLURM logs, pipes) a plain line is printed every `every` steps and at the last step.
"""
from __future__ import annotations

import sys
import time

import lightning as L


def _hms(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _scalar(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("loss")
    try:
        return float(value)  # one device sync, only when a line is printed
    except (TypeError, ValueError):
        return None


class ProgressLines(L.Callback):
    """Prints `step S/N | R steps/s | loss L | psnr P dB | left H:MM:SS` (rank 0 only), and the latest
    validation's lip sync (mouth_r, cross mouth_r; stage 1: the mouth-AU r) once there is one.

    loss: this step's total training loss; psnr: the last logged train/psnr (face mask, dB);
    steps/s and time left: over the last RATE_WINDOW_S seconds (since training started in this process until
    then), so a run whose steps slow down as its Gaussians multiply is not promised the early rate.
    """

    RATE_WINDOW_S = 60.0

    def __init__(self, every: int, stream=None, refresh_s: float = 0.5, prefix: str = "") -> None:
        self.every, self.refresh_s, self.prefix = max(1, int(every)), refresh_s, prefix
        self.stream = stream
        self._last, self._width = 0.0, 0
        self._marks: list[tuple[float, int]] = []  # (time, step) of recent lines, from the start: the rate's window

    @property
    def _out(self):
        return self.stream or sys.stdout

    def _tty(self) -> bool:
        try:
            return self._out.isatty()
        except (AttributeError, ValueError):
            return False

    def on_train_start(self, trainer, pl_module) -> None:
        self._last = time.monotonic()
        self._marks = [(self._last, trainer.global_step)]  # a resumed run counts from its resume step

    def line(self, trainer, outputs) -> str:
        step, total = trainer.global_step, trainer.max_steps
        now, marks = time.monotonic(), self._marks
        # the oldest mark still inside the window (or the newest one before it, so the window is never empty)
        while len(marks) > 1 and now - marks[1][0] >= self.RATE_WINDOW_S:
            marks.pop(0)
        t_from, step_from = marks[0]
        rate = (step - step_from) / max(now - t_from, 1e-9)
        marks.append((now, step))
        parts = [f"{self.prefix}step {step}/{total}", f"{rate:.2f} steps/s"]
        metrics = trainer.callback_metrics
        loss = _scalar(outputs)
        loss = loss if loss is not None else _scalar(metrics.get("train/total"))
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        psnr = _scalar(metrics.get("train/psnr"))
        if psnr is not None:
            parts.append(f"psnr {psnr:.2f} dB")
        val = _scalar(metrics.get("psnr_val"))
        if val is not None:
            parts.append(f"val {val:.2f} dB")
        for key, name in (("val/mouth_r", "mouth_r"), ("val/cross_mouth_r", "cross mouth_r"),
                          ("cmmm/mouth_au_r", "mouth-AU r")):  # lip sync of the latest validation
            v = _scalar(metrics.get(key))
            if v is not None and v == v:
                parts.append(f"{name} {v:.2f}")
        parts.append(f"left {_hms((total - step) / rate) if rate > 0 else '?'}")
        return " | ".join(parts)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero:
            return
        step, last = trainer.global_step, trainer.global_step >= trainer.max_steps
        if self._tty():
            now = time.monotonic()
            if now - self._last < self.refresh_s and not last:
                return
            self._last = now
            text = self.line(trainer, outputs)
            self._width = max(self._width, len(text))
            self._out.write("\r" + text.ljust(self._width) + ("\n" if last else ""))
        elif step % self.every == 0 or last:
            self._out.write(self.line(trainer, outputs) + "\n")
        self._out.flush()

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self._tty() and trainer.global_step < trainer.max_steps:
            self._out.write("\n")  # stopped early: end the in-place line
            self._out.flush()
