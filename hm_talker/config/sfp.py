"""Stochastic Feature Pairing's config, and what a config trains.

SFPConfig is the `sfp` section of `hm-talker fit` (the schedule itself: hm_talker/training/sfp.py).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SFPConfig:
    enabled: bool = True  # pair with both sources; false: measured AUs only in training (the no-SFP ablation)
    schedule: str = "alternate"  # alternate (fixed cycles), random (Bernoulli per step) or curriculum (p falls from 1)
    p_measured: float = 0.5  # share of steps on measured AUs (alternate: per cycle; random; curriculum: final value)
    period: int = 2  # alternate only: cycle length in steps, the first p_measured * period of them measured (a whole number)
    curriculum_steps: int = 1000  # curriculum only: steps over which p(measured) falls linearly from 1 to p_measured
    seed: int = 0  # random / curriculum draws: hash of (seed, step)
    predicted_lip_motion: float = 1.0  # scale of loss.lip_motion on predicted-AU steps (0: the landmark target only with measured AUs)
    predicted_share: float = 1.0  # on predicted-AU steps the AUs are measured + share x (predicted - measured): 1 the paper's pairing, below 1 the predictor's errors scaled down (0 < share <= 1)
    predicted_implicit: str = "audio"  # the implicit feature on predicted-AU steps: audio, or silent (at its mean: those steps must render from the predicted AUs alone)
    predicted_max_error: float = 0.0  # predicted-AU steps pair a frame with its prediction only where the predicted mouth opening (AU25, AU26) misses the measured one by at most this RMS z (in the identity's spread); other frames keep their measured AUs (0: all predicted)
    predicted_explicit_grad: bool = True  # false: on predicted-AU steps the AU encoder and the explicit gates take no gradient (the predictor's errors cannot turn the AU response down; the implicit path and the deformation field learn to cover them)


# --------------------------------------------------------------------------- what a config trains
# `config_problem` (run by hm_talker.config.fit.check_fit_config, so by `fit` and `sweep` before any
# training) refuses settings that do not train what they say; `effective_key`, `share` and `label` tell
# `hm-talker sweep` which runs train the same sequence and what each one trains. They take an SFPConfig
# or the `sfp` node of a loaded config (same attribute names).

# alternate: p_measured * period may miss a whole number by float error only (0.3 * 10 = 3.0000000000000004);
# anything further is a share the cycle cannot hold
WHOLE_STEPS_TOLERANCE = 1e-6
_DEFAULT = SFPConfig()


def measured_per_cycle(cfg) -> int:
    """Measured steps in one alternate cycle (the first ones of the cycle)."""
    return round(cfg.p_measured * cfg.period)


def config_problem(cfg) -> str | None:
    """Why this SFP config would not train what it says (one line), or None.

    The alternate schedule measures whole steps per cycle: p_measured * period must be a whole number
    (Python's round() halves to even, so p_measured=0.25 at period 2 trained predicted-only and 0.75
    measured-only). `period` / `curriculum_steps` are read by one schedule each: set under another schedule
    they change nothing, and two runs that differ only in them are the same run under two names.
    """
    x = cfg.p_measured * cfg.period
    if cfg.schedule == "alternate" and abs(x - round(x)) > WHOLE_STEPS_TOLERANCE:
        k = round(x)
        return (f"sfp.p_measured={cfg.p_measured:g} with sfp.period={cfg.period}: the alternate schedule measures "
                f"whole steps per cycle and {cfg.p_measured:g} x {cfg.period} = {x:g} is not whole (it would train "
                f"{k} of {cfg.period} steps measured, {k / cfg.period:.2f}); use a multiple of 1/{cfg.period} "
                f"or another period")
    if cfg.period != _DEFAULT.period and cfg.schedule != "alternate":
        return (f"sfp.period={cfg.period} with sfp.schedule={cfg.schedule}: only the alternate schedule reads "
                f"period; leave it at its default {_DEFAULT.period}")
    if cfg.curriculum_steps != _DEFAULT.curriculum_steps and cfg.schedule != "curriculum":
        return (f"sfp.curriculum_steps={cfg.curriculum_steps} with sfp.schedule={cfg.schedule}: only the "
                f"curriculum schedule reads curriculum_steps; leave it at its default {_DEFAULT.curriculum_steps}")
    return None


def effective_key(cfg, run_seed: int) -> tuple:
    """What SFP trains, canonically: equal keys <=> the same source at every step and the same loss weights.

    `run_seed` is the config's top-level seed (the schedule draws with sfp.seed + seed, as HMMMModule does).
    Fields the schedule does not read are left out: alternate ignores the seeds, random ignores period
    and curriculum_steps; p_measured=1 (any schedule but a curriculum below 1) is measured-only like
    sfp.enabled=false, p_measured=0 under alternate / random is predicted-only.
    sfp.predicted_lip_motion counts only when some step is predicted.
    """
    if not cfg.enabled:
        return ("measured-only",)
    p = float(cfg.p_measured)
    lm = (float(cfg.predicted_lip_motion), str(getattr(cfg, "predicted_implicit", "audio")),
          float(getattr(cfg, "predicted_share", 1.0)),
          bool(getattr(cfg, "predicted_explicit_grad", True)),
          float(getattr(cfg, "predicted_max_error", 0.0)))  # what a predicted step trains
    if cfg.schedule == "alternate":
        k = measured_per_cycle(cfg)
        if k >= cfg.period:
            return ("measured-only",)
        return ("predicted-only", lm) if k == 0 else ("alternate", k, int(cfg.period), lm)
    if p >= 1.0:  # random: u < 1 always; curriculum: p(step) = 1 throughout
        return ("measured-only",)
    seed = int(cfg.seed) + int(run_seed)
    if cfg.schedule == "random":
        return ("predicted-only", lm) if p <= 0.0 else ("random", p, seed, lm)
    return ("curriculum", p, int(cfg.curriculum_steps), seed, lm)


def share(cfg, steps: int) -> tuple[float, bool]:
    """(share of measured steps, exact?): alternate its exact share per cycle, random the expected share,
    curriculum the expected share over the run's first `steps` steps (it starts at 1)."""
    key = effective_key(cfg, 0)
    if key[0] in ("measured-only", "predicted-only"):
        return (1.0 if key[0] == "measured-only" else 0.0), True
    if key[0] == "alternate":
        return key[1] / key[2], True
    p = float(cfg.p_measured)
    if key[0] == "random" or steps <= 0:
        return p, False
    c = int(cfg.curriculum_steps)
    m = min(steps, c)  # steps on the ramp: p(s) = 1 - s / c * (1 - p), then p
    return (m - (1.0 - p) / c * m * (m - 1) / 2 + (steps - m) * p) / steps, False


def describe(cfg, steps: int) -> str:
    """`measured=0.50 (alternate: 1 of 2 steps)`: the share of measured-AU steps this config trains
    ('=' exact, '~' expected) and how."""
    value, exact = share(cfg, steps)
    key = effective_key(cfg, 0)
    how = {"measured-only": "measured only" if cfg.enabled else "SFP off: measured only",
           "predicted-only": "predicted only"}.get(key[0])
    if how is None:
        if key[0] == "alternate":
            how = f"alternate: {key[1]} of {key[2]} steps"
        elif key[0] == "random":
            how = "random, expected"
        else:
            how = f"curriculum 1 -> {cfg.p_measured:g} over {cfg.curriculum_steps} steps, expected over {steps}"
    return f"measured{'=' if exact else '~'}{value:.2f} ({how})"


def label(cfg) -> str:
    """A run-name part saying what SFP trains: alt-m0.25-p4, rand-m0.25, curr-m0.25-c1000, measured-only,
    predicted-only (letters, digits, '.' and '-' only)."""
    key = effective_key(cfg, 0)
    if key[0] == "measured-only":
        return key[0]
    ps = float(getattr(cfg, "predicted_share", 1.0))
    blend = f"-s{ps:.3g}" if ps != 1.0 else ""  # predicted steps with a share of the prediction
    if not getattr(cfg, "predicted_explicit_grad", True):
        blend += "-hx"  # predicted steps hold the explicit path (no gradient into the AU encoder and gates)
    gate = float(getattr(cfg, "predicted_max_error", 0.0))
    if gate > 0:
        blend += f"-g{gate:.3g}"  # predicted steps pair only the frames their prediction gets within this error
    if key[0] == "predicted-only":
        return key[0] + blend
    if key[0] == "alternate":
        return f"alt-m{key[1] / key[2]:.3g}-p{key[2]}{blend}"
    if key[0] == "random":
        return f"rand-m{cfg.p_measured:.3g}{blend}"
    return f"curr-m{cfg.p_measured:.3g}-c{cfg.curriculum_steps}{blend}"
