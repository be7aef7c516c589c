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
