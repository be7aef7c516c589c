"""Two runs against one reference mouth: the paired difference of their mouth_r and its interval
(hm_talker/metrics/mouth_paired.py), and `hm-talker evaluate --paired A B` on real evaluations."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ar1
from hm_talker.cli import main
from hm_talker.metrics.mouth import effective_frames, r_interval
from hm_talker.metrics.mouth_paired import difference_interval, paired_difference


def _mouths(rng, n=300, phi=0.85, r_a=0.5, r_b=0.4, alike=0.8):
    """A smooth reference mouth and two generated ones whose true correlations with it are r_a and r_b;
    their errors are correlated at `alike` (two configurations of one model err alike)."""
    ref, e_a, e_c = ar1(rng, n, phi), ar1(rng, n, phi), ar1(rng, n, phi)
    e_b = alike * e_a + np.sqrt(1 - alike ** 2) * e_c
    return ref, r_a * ref + np.sqrt(1 - r_a ** 2) * e_a, r_b * ref + np.sqrt(1 - r_b ** 2) * e_b


def test_the_interval_is_zous_on_his_worked_example():
    """Zou (2007), overlapping correlations: r12 = .396, r13 = .179, r23 = .088 on 66 subjects give r12 - r13
    in (-.093, .517). Pairing each bound with the other interval's bound on the same side gives (-.107, .501)."""
    lo, hi = difference_interval(0.179, 0.396, 0.088, 66, 66)
    assert (round(lo, 3), round(hi, 3)) == (-0.093, 0.517)


def test_the_paired_interval_covers_the_true_difference_and_is_narrower_than_one_runs_own():
    """Known truth: r_B - r_A = -0.1 for every draw. Counting every frame as independent covers it in
    about 59 % of draws (fails the coverage bound); ignoring how alike the two runs are makes it wider than
    one run's own interval (ratio 1.5: fails the width bound)."""
    rng = np.random.default_rng(1)
    covered, widths, single = 0, [], []
    for _ in range(200):
        ref, a, b = _mouths(rng)
        d = paired_difference(ref, a, b)
        covered += d["mouth_r_diff_lo"] <= -0.1 <= d["mouth_r_diff_hi"]
        widths.append(d["mouth_r_diff_hi"] - d["mouth_r_diff_lo"])
        lo, hi = r_interval(d["mouth_r_a"], effective_frames(a, ref))
        single.append(hi - lo)
    assert covered / 200 >= 0.9
    assert np.mean(widths) < 0.8 * np.mean(single)


def test_a_run_against_itself_differs_by_nothing_and_a_deaf_run_is_below():
    rng = np.random.default_rng(2)
    ref, a, _ = _mouths(rng, n=400, r_a=0.7)
    same = paired_difference(ref, a, a)
    assert same["mouth_r_diff"] == 0.0 and same["mouth_r_diff_lo"] <= 0.0 <= same["mouth_r_diff_hi"]
    deaf = ar1(rng, 400, 0.85)  # a mouth that moves with nothing the reference says
    d = paired_difference(ref, a, deaf)
    assert d["mouth_r_diff_hi"] < 0 and d["mouth_r_diff"] == pytest.approx(d["mouth_r_b"] - d["mouth_r_a"])


def test_frames_without_a_face_in_any_clip_are_left_out_of_all_three():
    rng = np.random.default_rng(3)
    ref, a, b = _mouths(rng)
    a_gap = a.copy()
    a_gap[:100] = np.nan
    d = paired_difference(ref, a_gap, b)
    cut = paired_difference(ref[100:], a[100:], b[100:])
    assert d["mouth_frames"] == 200
    assert d["mouth_r_b"] == pytest.approx(cut["mouth_r_b"])  # B scored on A's frames only
    still = paired_difference(np.zeros(300), a, b)
    assert still["mouth_r_diff"] is None and "does not move" in still["notes"]["mouth_r_diff"]


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory, synthetic_clip):
    """`evaluate --pred --target` folders: the reference clip against itself (A), another synthetic talker
    (its own sound, so a mouth unrelated to the reference: B) against it, and B against its own clip."""
    from hm_talker.synthetic import make_synthetic_clip

    root = tmp_path_factory.mktemp("paired")
    other = make_synthetic_clip(root / "other.mp4", seconds=6.0, size=256, seed=5).path
    ref = synthetic_clip.path
    for name, pred, target in (("a", ref, ref), ("b", other, ref), ("own", other, other)):
        assert main(["-q", "evaluate", "--pred", str(pred), "--target", str(target), "--out", str(root / name)]) == 0
    return root


def test_evaluate_writes_the_trajectories_it_scored(evaluations):
    m = json.loads((evaluations / "b" / "metrics.json").read_text())
    with np.load(evaluations / "b" / "mouth.npz", allow_pickle=False) as z:
        gen, ref = z["generated"], z["reference"]
    ok = np.isfinite(gen) & np.isfinite(ref)
    assert len(gen) == 150 and ok.sum() > 140
    assert np.corrcoef(gen[ok], ref[ok])[0, 1] == pytest.approx(m["mouth_r"], abs=1e-9)


def test_evaluate_paired_says_an_unrelated_mouth_is_below_the_reference_itself(evaluations, tmp_path, capsys):
    assert main(["evaluate", "--paired", str(evaluations / "a"), str(evaluations / "b"), "--out",
                 str(tmp_path / "ab")]) == 0
    assert "B below A" in capsys.readouterr().out
    m = json.loads((tmp_path / "ab" / "metrics.json").read_text())
    assert m["mouth_r_a"] == pytest.approx(1.0) and abs(m["mouth_r_b"]) < 0.4
    assert m["mouth_r_diff_hi"] < 0 and m["inputs"]["protocol"] == "paired"
    assert main(["evaluate", "--paired", str(evaluations / "b"), str(evaluations / "a"), "--out",
                 str(tmp_path / "ba")]) == 0
    assert "B above A" in capsys.readouterr().out


def test_evaluate_paired_refuses_two_references_and_a_folder_without_trajectories(evaluations, tmp_path, capsys):
    code = main(["evaluate", "--paired", str(evaluations / "a"), str(evaluations / "own"), "--out",
                 str(tmp_path / "x")])
    assert code == 2 and "not scored against the same reference mouth" in capsys.readouterr().err
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "mouth.npz").write_bytes((evaluations / "b" / "mouth.npz").read_bytes()[:200])
    code = main(["evaluate", "--paired", str(evaluations / "a"), str(tmp_path / "torn"), "--out",
                 str(tmp_path / "t")])
    assert code == 2 and "unreadable mouth trajectory" in capsys.readouterr().err
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.json").write_text("{}")
    code = main(["evaluate", "--paired", str(evaluations / "a"), str(tmp_path / "old"), "--out",
                 str(tmp_path / "y")])
    assert code == 2 and "no mouth.npz" in capsys.readouterr().err
    code = main(["evaluate", "--paired", str(evaluations / "a"), str(evaluations / "b"), "--ckpt", "x.ckpt",
                 "--out", str(tmp_path / "z")])
    assert code == 2 and "give it alone" in capsys.readouterr().err


def test_evaluate_paired_says_another_face_is_above_on_lpips_face(evaluations, tmp_path, capsys):
    assert main(["evaluate", "--paired", str(evaluations / "a"), str(evaluations / "b"), "--out",
                 str(tmp_path / "ab")]) == 0
    out = capsys.readouterr().out
    m = json.loads((tmp_path / "ab" / "metrics.json").read_text())
    own = {k: json.loads((evaluations / k / "metrics.json").read_text()) for k in ("a", "b")}
    for key in ("psnr_face", "lpips_face"):  # every frame has a face: the means are each run's own number
        assert m[f"{key}_a"] == pytest.approx(own["a"][key], abs=1e-6)
        assert m[f"{key}_b"] == pytest.approx(own["b"][key], abs=1e-6)
    assert m["lpips_face_diff_lo"] > 0.05 and "lpips_face A" in out and "B above A" in out
    # A is the target itself: psnr_face at its cap (100 dB) in every frame, so B - A is B's own smooth psnr minus
    # a constant, near 1 at lag 1: fewer than 4 effective frames, no interval (said, not made up)
    assert m["psnr_face_diff"] < -50 and m["psnr_face_diff_lo"] is None
    assert m["notes"]["psnr_face_diff"] == "fewer than 4 independent frames"
