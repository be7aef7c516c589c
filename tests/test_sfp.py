"""Stochastic Feature Pairing: the share of each objective follows the config, and the sequence is a
function of (seed, step) only, so a resumed run continues it."""
import pytest

from hm_talker.training.sfp import MEASURED, PREDICTED, SFPConfig, SFPSchedule


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.8, 1.0])
def test_random_share_matches_p_measured(p):
    s = SFPSchedule(SFPConfig(schedule="random", p_measured=p, seed=3))
    # 4000 Bernoulli draws: std of the share <= 0.008, so 0.03 is about 4 sigma
    assert abs(s.share_measured(0, 4000) - p) < 0.03


@pytest.mark.parametrize("period,p,expected", [(2, 0.5, [1, 0]), (4, 0.75, [1, 1, 1, 0]), (5, 0.4, [1, 1, 0, 0, 0])])
def test_alternate_is_exact_cycles(period, p, expected):
    s = SFPSchedule(SFPConfig(schedule="alternate", period=period, p_measured=p))
    got = [int(s.source(t) == MEASURED) for t in range(3 * period)]
    assert got == expected * 3
    assert s.share_measured(0, 100 * period) == pytest.approx(sum(expected) / period)


def test_curriculum_starts_measured_and_ends_at_p():
    s = SFPSchedule(SFPConfig(schedule="curriculum", p_measured=0.2, curriculum_steps=1000, seed=1))
    assert s.p_measured(0) == 1.0 and s.p_measured(500) == pytest.approx(0.6) and s.p_measured(5000) == pytest.approx(0.2)
    assert s.share_measured(0, 50) > 0.9
    assert abs(s.share_measured(2000, 6000) - 0.2) < 0.03


def test_disabled_is_measured_only_and_sequence_is_resumable():
    assert SFPSchedule(SFPConfig(enabled=False, p_measured=0.0)).share_measured(0, 100) == 1.0
    a = SFPSchedule(SFPConfig(schedule="random", seed=7))
    b = SFPSchedule(SFPConfig(schedule="random", seed=7))  # a new process after a resume
    assert [a.source(t) for t in range(100, 200)] == [b.source(t) for t in range(100, 200)]
    c = SFPSchedule(SFPConfig(schedule="random", seed=8))
    assert [a.source(t) for t in range(200)] != [c.source(t) for t in range(200)]
    assert {a.source(t) for t in range(200)} == {MEASURED, PREDICTED}


def test_bad_settings_are_refused():
    for bad in (dict(schedule="sometimes"), dict(p_measured=1.5), dict(period=0)):
        with pytest.raises(ValueError):
            SFPSchedule(SFPConfig(**bad))


# ------------------------------------------------------------------ configs that mean what they say
from dataclasses import replace  # noqa: E402

from hm_talker.errors import InputError  # noqa: E402
from hm_talker.config import sfp as sfp_mod  # noqa: E402


def _load(*overrides):
    from hm_talker.config.fit import load_config

    return load_config(None, ["data.root=ident", *overrides])


@pytest.mark.parametrize("p,period,trained", [(0.25, 2, 0.0), (0.75, 2, 1.0), (0.3, 4, 0.25), (0.5, 3, 2 / 3)])
def test_alternate_refuses_a_share_its_period_cannot_hold(p, period, trained):
    """round() halves to even: p=0.25 at period 2 trained predicted-only, 0.75 measured-only. Such a
    config is refused at validation (so by `fit` before training), one line naming both values."""
    # what the schedule would have trained (the mislabel this rule stops)
    assert SFPSchedule(SFPConfig(p_measured=p, period=period)).share_measured(0, 12 * period) == pytest.approx(trained)
    with pytest.raises(InputError) as e:
        _load(f"sfp.p_measured={p}", f"sfp.period={period}")
    msg = str(e.value)
    assert "\n" not in msg and f"sfp.p_measured={p:g}" in msg and f"sfp.period={period}" in msg
    assert f"{round(p * period)} of {period} steps measured" in msg


@pytest.mark.parametrize("p,period", [(0.0, 2), (0.5, 2), (1.0, 2), (0.25, 4), (0.75, 4), (0.3, 10), (0.375, 8)])
def test_alternate_accepts_whole_steps_per_cycle(p, period):
    cfg = _load(f"sfp.p_measured={p}", f"sfp.period={period}")  # 0.3 x 10 = 3.0000000000000004: float error only
    s = SFPSchedule(SFPConfig(p_measured=cfg.sfp.p_measured, period=cfg.sfp.period))
    assert s.share_measured(0, 10 * period) == pytest.approx(p)  # the share it says is the share it trains


@pytest.mark.parametrize("overrides,key", [
    (["sfp.schedule=random", "sfp.period=4"], "sfp.period=4 with sfp.schedule=random"),
    (["sfp.schedule=curriculum", "sfp.period=8"], "sfp.period=8 with sfp.schedule=curriculum"),
    (["sfp.schedule=alternate", "sfp.curriculum_steps=500"], "sfp.curriculum_steps=500 with sfp.schedule=alternate"),
    (["sfp.schedule=random", "sfp.curriculum_steps=500"], "sfp.curriculum_steps=500 with sfp.schedule=random"),
])
def test_a_field_the_schedule_does_not_read_is_refused(overrides, key):
    with pytest.raises(InputError) as e:
        _load(*overrides)
    assert key in str(e.value) and "only the" in str(e.value) and "\n" not in str(e.value)


def test_fields_of_the_chosen_schedule_and_defaults_pass():
    _load("sfp.schedule=random", "sfp.p_measured=0.25", "sfp.period=2")  # period at its default: not set
    _load("sfp.schedule=curriculum", "sfp.p_measured=0.25", "sfp.curriculum_steps=500")
    _load("sfp.enabled=false")


SEQUENCE_STEPS = 3000  # the full model's trainer.max_steps: the sequences compared over a whole run


def _sequence(cfg: SFPConfig, run_seed: int) -> tuple:
    s = SFPSchedule(replace(cfg, seed=cfg.seed + run_seed))  # as HMMMModule builds it
    return tuple(s.source(t) == MEASURED for t in range(SEQUENCE_STEPS))


def test_effective_key_is_equal_exactly_when_the_sequences_are():
    """The canonical key `hm-talker sweep` compares: equal for configs that train the same sources at every
    step (fields the schedule ignores, the measured-/predicted-only corners), different otherwise."""
    cases = [
        (SFPConfig(enabled=False), 0), (SFPConfig(enabled=False, schedule="random", p_measured=0.1), 3),
        (SFPConfig(p_measured=1.0), 0), (SFPConfig(schedule="random", p_measured=1.0, seed=5), 0),
        (SFPConfig(schedule="curriculum", p_measured=1.0), 0),
        (SFPConfig(p_measured=0.0), 0), (SFPConfig(schedule="random", p_measured=0.0), 1),
        (SFPConfig(p_measured=0.5, period=2), 0), (SFPConfig(p_measured=0.5, period=2, seed=9), 4),
        (SFPConfig(p_measured=0.5, period=4), 0), (SFPConfig(p_measured=0.25, period=4), 0),
        (SFPConfig(schedule="random", p_measured=0.5), 0), (SFPConfig(schedule="random", p_measured=0.5, period=8), 0),
        (SFPConfig(schedule="random", p_measured=0.5, seed=1), 0), (SFPConfig(schedule="random", p_measured=0.5), 1),
        (SFPConfig(schedule="random", p_measured=0.25), 0),
        (SFPConfig(schedule="curriculum", p_measured=0.5), 0), (SFPConfig(schedule="curriculum", p_measured=0.5,
                                                                          curriculum_steps=500), 0),
        (SFPConfig(schedule="curriculum", p_measured=0.0), 0),
    ]
    seqs = [_sequence(c, s) for c, s in cases]
    keys = [sfp_mod.effective_key(c, s) for c, s in cases]
    for i in range(len(cases)):
        for j in range(i + 1, len(cases)):
            assert (keys[i] == keys[j]) == (seqs[i] == seqs[j]), (cases[i], cases[j])
    assert len(set(keys)) == 11  # 19 configs, 11 sequences (sfp.seed=1 at seed 0 draws as sfp.seed=0 at seed 1)
    # the same sequence with another weight on its predicted steps trains something else
    assert sfp_mod.effective_key(SFPConfig(predicted_lip_motion=0.5), 0) != sfp_mod.effective_key(SFPConfig(), 0)
    assert sfp_mod.effective_key(SFPConfig(enabled=False, predicted_lip_motion=0.5), 0) == ("measured-only",)


@pytest.mark.parametrize("cfg,text,literal", [
    (SFPConfig(p_measured=0.25, period=4), "measured=0.25 (alternate: 1 of 4 steps)", 0.25),
    (SFPConfig(p_measured=0.5, period=2), "measured=0.50 (alternate: 1 of 2 steps)", 0.5),
    (SFPConfig(enabled=False), "measured=1.00 (SFP off: measured only)", 1.0),
    (SFPConfig(p_measured=0.0), "measured=0.00 (predicted only)", 0.0),
    (SFPConfig(schedule="random", p_measured=0.75), "measured~0.75 (random, expected)", 0.75),
    # ramp 1 -> 0.25 over 1000 steps (mean 0.62525), then 0.25 for 2000: 0.375 over 3000 steps
    (SFPConfig(schedule="curriculum", p_measured=0.25), "measured~0.38 (curriculum 1 -> 0.25 over 1000 steps, "
                                                       "expected over 3000)", 0.375),
])
def test_described_share_is_the_share_the_schedule_trains(cfg, text, literal):
    assert sfp_mod.describe(cfg, SEQUENCE_STEPS) == text
    value, exact = sfp_mod.share(cfg, SEQUENCE_STEPS)
    s = SFPSchedule(cfg)
    expected = sum(s.p_measured(t) for t in range(SEQUENCE_STEPS)) / SEQUENCE_STEPS if cfg.enabled else 1.0
    if exact:
        assert s.share_measured(0, SEQUENCE_STEPS) == value == literal
    else:
        assert value == pytest.approx(expected, abs=2e-4) and value == pytest.approx(literal, abs=2e-4)
        # 3000 Bernoulli draws: std <= 0.0092, 0.04 is over 4 sigma
        assert abs(s.share_measured(0, SEQUENCE_STEPS) - value) < 0.04


def test_labels_name_what_is_trained():
    assert [sfp_mod.label(c) for c in (SFPConfig(p_measured=0.25, period=4), SFPConfig(schedule="random", p_measured=0.5),
                                       SFPConfig(schedule="curriculum", p_measured=0.75), SFPConfig(enabled=False),
                                       SFPConfig(schedule="random", p_measured=0.0))] == \
        ["alt-m0.25-p4", "rand-m0.5", "curr-m0.75-c1000", "measured-only", "predicted-only"]


def test_a_predicted_share_is_its_own_run_named_and_checked():
    half = SFPConfig(predicted_share=0.5)
    assert sfp_mod.effective_key(half, 0) != sfp_mod.effective_key(SFPConfig(), 0)
    assert sfp_mod.effective_key(SFPConfig(enabled=False, predicted_share=0.5), 0) == ("measured-only",)
    assert sfp_mod.label(half) == "alt-m0.5-p2-s0.5" and sfp_mod.label(SFPConfig()) == "alt-m0.5-p2"
    from hm_talker.config.fit import load_config

    for bad in (0.0, -0.5, 1.5):  # the range lives in validate.FIT_RANGES, checked by fit and every sweep run
        with pytest.raises(InputError, match="sfp.predicted_share"):
            load_config(None, ["data.root=ident", f"sfp.predicted_share={bad}"])
    assert sfp_mod.config_problem(half) is None
    assert load_config(None, ["data.root=ident", "sfp.predicted_share=0.5"]).sfp.predicted_share == 0.5


def test_a_held_explicit_path_is_its_own_run_and_named():
    held = SFPConfig(predicted_share=0.25, predicted_explicit_grad=False)
    assert sfp_mod.effective_key(held, 0) != sfp_mod.effective_key(SFPConfig(predicted_share=0.25), 0)
    assert sfp_mod.effective_key(SFPConfig(enabled=False, predicted_explicit_grad=False), 0) == ("measured-only",)
    assert sfp_mod.label(held) == "alt-m0.5-p2-s0.25-hx"


def test_a_max_error_gate_is_its_own_run_named_and_ranged():
    from hm_talker.config.fit import load_config

    gated = SFPConfig(predicted_max_error=1.0)
    assert sfp_mod.effective_key(gated, 0) != sfp_mod.effective_key(SFPConfig(), 0)
    assert sfp_mod.effective_key(SFPConfig(enabled=False, predicted_max_error=1.0), 0) == ("measured-only",)
    assert sfp_mod.label(gated) == "alt-m0.5-p2-g1"
    with pytest.raises(InputError, match="sfp.predicted_max_error"):
        load_config(None, ["data.root=ident", "sfp.predicted_max_error=-1"])
