"""Stochastic Feature Pairing: which explicit source the implicit feature is paired with, per step.

Every training step pairs the implicit (audio) feature with the explicit (AU) feature of ONE source:
``measured`` (AUs measured on the training frame: the identity-specific objective) or ``predicted``
(AUs predicted from the audio by CMMM: the identity-agnostic, audio-only objective that inference
uses). Alternating between the two keeps the deformation field from over-fitting the identity's
measured AU statistics while it still learns sharp, AU-driven lips.

The choice is a pure function of (seed, step): a resumed run continues the same sequence with no
state to save, and any process (DDP rank) draws the same source for the same step.
"""
from __future__ import annotations

import random

from hm_talker.config.sfp import SFPConfig
from hm_talker.constants import MEASURED, PREDICTED

SCHEDULES = ("alternate", "random", "curriculum")


class SFPSchedule:
    """source(step) -> "measured" | "predicted"; `share(steps)` for logs and tests."""

    def __init__(self, cfg: SFPConfig) -> None:
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"sfp.schedule must be one of {SCHEDULES}, not {cfg.schedule!r}")
        if not 0.0 <= cfg.p_measured <= 1.0:
            raise ValueError(f"sfp.p_measured must be in [0, 1], not {cfg.p_measured}")
        if cfg.period < 1 or cfg.curriculum_steps < 1:
            raise ValueError("sfp.period and sfp.curriculum_steps must be >= 1")
        self.cfg = cfg

    def p_measured(self, step: int) -> float:
        """Probability (or share) of the measured source at this step."""
        c = self.cfg
        if not c.enabled:
            return 1.0
        if c.schedule == "curriculum":
            t = min(1.0, step / c.curriculum_steps)
            return 1.0 - t * (1.0 - c.p_measured)
        return c.p_measured

    def source(self, step: int) -> str:
        c = self.cfg
        if not c.enabled:
            return MEASURED
        if c.schedule == "alternate":
            return MEASURED if step % c.period < round(c.p_measured * c.period) else PREDICTED
        u = random.Random(c.seed * 1_000_003 + step).random()  # one independent draw per (seed, step)
        return MEASURED if u < self.p_measured(step) else PREDICTED

    def share_measured(self, start: int, stop: int) -> float:
        """Fraction of steps in [start, stop) paired with measured AUs."""
        n = max(1, stop - start)
        return sum(self.source(s) == MEASURED for s in range(start, stop)) / n
