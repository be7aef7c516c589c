"""`hm-talker compare --baseline GROUP`: each run paired with the baseline run of its seed on the reference mouth
both were scored against (a fit's latest validation, an evaluation's mouth.npz), and pairs that cannot be made
said as such. Mouths with a known relation to the reference: a copy of it is above an unrelated one."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hm_talker.cli import main
from hm_talker.evaluation.paired import save_trajectory
from hm_talker.evaluation.validation import trajectory_name


def _smooth(rng, n=300, phi=0.85) -> np.ndarray:
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + rng.normal()
    return x


def _fit_run(root, name, group, seed, mouths: dict, identity: str = "ident") -> None:
    """A fit's run folder: summary.json and RUN/val/ trajectories {(step, reference or None): (generated, ref)}."""
    run = root / name
    (run / "val").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"name": name, "group": group, "seed": seed, "tags": [],
                                                  "config": {"data.root": identity},
                                                  "metrics": {"val/cross_mouth_r": 0.0}}))
    for (step, ref), (gen, reference) in mouths.items():
        save_trajectory(run / "val", {"generated": gen, "reference": reference}, {"step": step}, trajectory_name(step, ref))


@pytest.fixture()
def mouths():
    rng = np.random.default_rng(0)
    ref, held = _smooth(rng), _smooth(rng, n=120)
    unrelated = [_smooth(rng) for _ in range(4)]
    return rng, ref, held, unrelated


def test_a_copy_of_the_reference_is_above_the_baseline_seed_by_seed(tmp_path, mouths, capsys):
    rng, ref, held, unrelated = mouths
    noisy = ref + rng.normal(0, 0.3, ref.shape)  # mouth_r about 0.95 against ref
    for seed in (0, 1):
        _fit_run(tmp_path, f"deaf{seed}", "deaf", seed, {(20, "spk"): (ref, ref), (40, "spk"): (unrelated[seed], ref),
                                                        (40, None): (held, held)})
        # the earlier validation's mouth is unrelated; the latest (step 40) follows the reference: it is the one paired
        _fit_run(tmp_path, f"hear{seed}", "hear", seed, {(20, "spk"): (unrelated[2 + seed], ref),
                                                        (40, "spk"): (noisy, ref), (40, None): (held, held)})
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "cmp"), "--baseline", "deaf", "--wandb"]) == 0
    pairs = json.loads((tmp_path / "cmp" / "paired.json").read_text())["pairs"]
    logged = next((tmp_path / "cmp" / "wandb").glob("offline-run-*/files/media/table/comparison/paired_*.table.json"))
    table = json.loads(logged.read_text())  # the pairs went into the comparison's W&B run too
    assert len(table["data"]) == len(pairs) == 4 and "verdict" in table["columns"]
    cross = sorted((p for p in pairs if p["reference"] == "cross-spk"), key=lambda p: p["seed"])
    assert [(p["run"], p["baseline_run"], p["verdict"]) for p in cross] == [("hear0", "deaf0", "above"),
                                                                             ("hear1", "deaf1", "above")]
    for p in cross:
        assert p["mouth_r_b"] > 0.9 and abs(p["mouth_r_a"]) < 0.4 and p["mouth_r_diff_lo"] > 0.3
    same = [p for p in pairs if p["reference"] == "self"]  # the same mouth on both sides: a difference of 0
    assert len(same) == 2 and all(p["mouth_r_diff"] == pytest.approx(0.0, abs=1e-12) for p in same)
    assert all(p["verdict"] == "not told apart" for p in same)
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "## Paired against deaf" in md and "| hear | cross-spk | 2 |" in md
    assert "Paired against deaf" in capsys.readouterr().out


def test_pairs_that_cannot_be_made_are_said_not_compared(tmp_path, mouths):
    rng, ref, held, unrelated = mouths
    _fit_run(tmp_path, "deaf0", "deaf", 0, {(20, "spk"): (unrelated[0], ref)})
    _fit_run(tmp_path, "other_ref", "hear", 0, {(20, "spk"): (unrelated[1], unrelated[3])})  # another clip
    _fit_run(tmp_path, "no_seed", "hear", 7, {(20, "spk"): (ref, ref)})
    _fit_run(tmp_path, "no_mouth", "hear", 0, {})
    _fit_run(tmp_path, "new_ref", "hear2", 0, {(20, "spk2"): (ref, ref)})
    _fit_run(tmp_path, "other_face", "hear", 0, {(20, "spk"): (ref, ref)}, identity="face2")  # same speaker, other model
    _fit_run(tmp_path, "unfinished", "hear", 0, {(10, "spk"): (ref, ref)})  # stopped before the baseline's step
    _fit_run(tmp_path, "no_seed_known", "hear", None, {(20, "spk"): (ref, ref)})
    _fit_run(tmp_path, "torn", "hear3", 0, {(20, "spk"): (ref, ref)})
    torn = tmp_path / "torn" / "val" / "step_000020_cross-spk.mouth.npz"
    torn.write_bytes(torn.read_bytes()[:100])
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "cmp"), "--baseline", "deaf"]) == 0
    verdicts = {p["run"]: p["verdict"] for p in json.loads((tmp_path / "cmp" / "paired.json").read_text())["pairs"]}
    assert verdicts["other_ref"].startswith("different reference mouths")
    assert verdicts["no_seed"] == "no deaf run with seed 7 on ident"
    assert verdicts["no_mouth"] == "no mouth trajectory in the run folder"
    assert verdicts["new_ref"] == "deaf0 has no cross-spk2 mouth"
    assert verdicts["other_face"] == "no deaf run with seed 0 on face2"
    assert verdicts["unfinished"] == "validations at different steps (deaf0 20, this run 10)"
    assert verdicts["no_seed_known"] == "seed unknown: not paired"
    assert verdicts["torn"].startswith("not compared:") and "unreadable mouth trajectory" in verdicts["torn"]
    _fit_run(tmp_path, "deaf0b", "deaf", 0, {(20, "spk"): (unrelated[2], ref)})  # a second baseline run of seed 0
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "cmp2"), "--baseline", "deaf"]) == 0
    verdicts = {p["run"]: p["verdict"] for p in json.loads((tmp_path / "cmp2" / "paired.json").read_text())["pairs"]}
    assert verdicts["other_ref"] == "2 runs are the deaf run with seed 0 on ident (deaf0, deaf0b): ambiguous, not paired"


def test_an_unknown_baseline_and_wandb_runs_are_refused_in_one_line(tmp_path, mouths, capsys):
    rng, ref, held, unrelated = mouths
    _fit_run(tmp_path, "deaf0", "deaf", 0, {(20, "spk"): (unrelated[0], ref)})
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "cmp"), "--baseline", "dfae"]) == 2
    err = capsys.readouterr().err
    assert "--baseline 'dfae' is none of the compared groups (deaf)" in err and not (tmp_path / "cmp").exists()
    with pytest.raises(SystemExit):
        main(["compare", "--wandb-project", "p", "--out", str(tmp_path / "w"), "--baseline", "deaf"])
    assert "give run directories or --sweep" in capsys.readouterr().err


def test_a_sweep_row_with_missing_seeds_is_its_configuration_and_nothing_else_is():
    from hm_talker.compare.paired import _in_group
    from hm_talker.compare.records import RunRecord

    assert _in_group(RunRecord("r", "sfp.enabled=False [2/3 seeds]"), "sfp.enabled=False")
    assert _in_group(RunRecord("r", "sfp.enabled=False"), "sfp.enabled=False")
    assert not _in_group(RunRecord("r", "sfp.enabled=False [lr=1]"), "sfp.enabled=False")
    assert not _in_group(RunRecord("r", "sfp.enabled=False x=1"), "sfp.enabled=False")


def test_the_mean_over_pairs_has_a_t_interval_over_the_pairs():
    """Five identities' SFP-on minus SFP-off differences (the README's five faces): mean -0.021, Student's t
    interval over the five [-0.090, +0.048] (worked by hand: sd 0.0555, t(0.975, 4) 2.776); two pairs, or pairs
    with no spread, get no interval."""
    from hm_talker.compare.paired import mean_over_pairs

    mean, lo, hi = mean_over_pairs([0.019, -0.011, -0.020, 0.021, -0.115])
    assert mean == pytest.approx(-0.0212, abs=1e-4)
    assert lo == pytest.approx(-0.090, abs=1e-3) and hi == pytest.approx(0.048, abs=1e-3)
    assert mean_over_pairs([0.1, 0.2])[1:] == (None, None)
    assert mean_over_pairs([0.1, 0.1, 0.1]) == (pytest.approx(0.1), None, None)


def test_the_tally_over_three_seeds_is_in_the_table_and_the_json(tmp_path, mouths):
    rng, ref, held, unrelated = mouths
    for seed in (0, 1, 2):
        _fit_run(tmp_path, f"deaf{seed}", "deaf", seed, {(40, "spk"): (_smooth(rng), ref)})
        _fit_run(tmp_path, f"hear{seed}", "hear", seed, {(40, "spk"): (ref + rng.normal(0, 0.3, ref.shape), ref)})
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "cmp"), "--baseline", "deaf"]) == 0
    summary = json.loads((tmp_path / "cmp" / "paired.json").read_text())
    (t,) = summary["tally"]
    diffs = [p["mouth_r_diff"] for p in summary["pairs"]]
    assert t["pairs"] == 3 and t["above"] == 3 and t["mean"] == pytest.approx(np.mean(diffs))
    assert 0.3 < t["lo"] < t["mean"] < t["hi"]  # hearing runs above their deaf twins across the seeds too
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert f"| hear | cross-spk | 3 | {t['mean']:+.3f} [{t['lo']:+.3f}, {t['hi']:+.3f}] | 3 | 0 | 0 |" in md
