"""`hm-talker sweep`: expansion of W&B-format specs into runs (no SLURM, no training)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hm_talker.errors import InputError
from hm_talker.launch.sweep import expand, load_spec

REPO = Path(__file__).resolve().parents[1]


def _sweep(*args: str, cwd=REPO, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hm_talker.cli", "sweep", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def _dry_run_lines(spec: str, *extra: str) -> list[str]:
    r = _sweep(str(REPO / spec), *extra, "--dry-run")
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if not line.startswith("#")]


def _dry_run(spec: str, *extra: str) -> list[list[str]]:
    """Each run's overrides (the `  # sfp: ...` note after them left out)."""
    return [line.split("  # ", 1)[0].split() for line in _dry_run_lines(spec, *extra)]


def _name(run: list[str]) -> str:
    return next(o for o in run if o.startswith("run.name=")).split("=", 1)[1]


def test_sfp_ablation_dry_run_is_every_setting_once_named_by_what_it_trains():
    lines = _dry_run_lines("sweeps/sfp_ablation.yaml", "data.root=ident", "run.dir=runs")
    runs = [line.split("  # ", 1)[0].split() for line in lines]
    assert len(runs) == 13 * 3  # 13 SFP settings x 3 seeds
    names = [_name(r) for r in runs]
    assert len(set(names)) == len(runs)
    assert all("run.group=sfp-ablation" in r and "data.root=ident" in r for r in runs)
    ids = {n.rsplit("-seed", 1)[0] for n in names}
    assert len(ids) == 13  # the three seeds of one setting share its name but the seed
    # the name carries the measured share the dry run prints, and the share is what the schedule trains
    share = {n: line.split("# sfp: ", 1)[1].split(" | stage 1: ")[0] for n, line in zip(names, lines)}
    # one stage 1 per seed, shared by the 13 SFP settings of that seed (SFP is stage 2's)
    stage1 = {line.split(" | stage 1: ", 1)[1] for line in lines}
    by_seed = {n.rsplit("-seed", 1)[1]: line.split(" | stage 1: ", 1)[1] for n, line in zip(names, lines)}
    assert len(stage1) == 3 and len(set(by_seed.values())) == 3
    by_label = {n.split("sfp-ablation-", 1)[1].rsplit("-", 2)[0]: share[n] for n in names}
    assert by_label == {
        "measured-only": "measured=1.00 (SFP off: measured only)", "predicted-only": "measured=0.00 (predicted only)",
        "alt-m0.25-p4": "measured=0.25 (alternate: 1 of 4 steps)", "alt-m0.5-p4": "measured=0.50 (alternate: 2 of 4 steps)",
        "alt-m0.75-p4": "measured=0.75 (alternate: 3 of 4 steps)", "alt-m0.5-p2": "measured=0.50 (alternate: 1 of 2 steps)",
        "alt-m0.5-p8": "measured=0.50 (alternate: 4 of 8 steps)",
        "rand-m0.25": "measured~0.25 (random, expected)", "rand-m0.5": "measured~0.50 (random, expected)",
        "rand-m0.75": "measured~0.75 (random, expected)",
        "curr-m0.25-c1000": "measured~0.38 (curriculum 1 -> 0.25 over 1000 steps, expected over 3000)",
        "curr-m0.5-c1000": "measured~0.58 (curriculum 1 -> 0.5 over 1000 steps, expected over 3000)",
        "curr-m0.75-c1000": "measured~0.79 (curriculum 1 -> 0.75 over 1000 steps, expected over 3000)",
    }
    # no run sets a field its schedule does not read
    assert not [r for r in runs if "sfp.period=" in " ".join(r) and "sfp.schedule=alternate" not in r]


def test_sfp_share_sweep_is_sfp_off_and_three_doses_each_named_by_its_share():
    runs = _dry_run("sweeps/sfp_share.yaml", "data.root=ident", "run.dir=runs", "cmmm.ckpt=stage1.ckpt")
    assert len(runs) == 4 * 2  # SFP off and shares 0.25 / 0.5 / 1, 2 seeds
    names = [_name(r) for r in runs]
    assert len(set(names)) == len(runs)
    labels = {n.split("sfp-share-", 1)[1].rsplit("-", 2)[0]: r for n, r in zip(names, runs)}
    # share 1 is the paper's pairing: its name carries no share; the smaller doses say theirs
    assert sorted(labels) == ["alt-m0.5-p2", "alt-m0.5-p2-s0.25", "alt-m0.5-p2-s0.5", "measured-only"]
    assert "sfp.predicted_share=0.25" in labels["alt-m0.5-p2-s0.25"] and "sfp.enabled=true" in labels["alt-m0.5-p2-s0.25"]
    assert "sfp.enabled=false" in labels["measured-only"]
    assert all("eval.deaf_control=true" in r and "cmmm.ckpt=stage1.ckpt" in r for r in runs)


def test_sfp_gate_sweep_is_sfp_off_the_pairing_and_two_gates_each_named_by_its_gate():
    runs = _dry_run("sweeps/sfp_gate.yaml", "data.root=ident", "run.dir=runs", "cmmm.ckpt=stage1.ckpt")
    assert len(runs) == 4 * 2  # SFP off, the ungated pairing and gates 0.5 / 0.75, 2 seeds
    names = [_name(r) for r in runs]
    assert len(set(names)) == len(runs)
    labels = {n.split("sfp-gate-", 1)[1].rsplit("-", 2)[0]: r for n, r in zip(names, runs)}
    assert sorted(labels) == ["alt-m0.5-p2", "alt-m0.5-p2-g0.5", "alt-m0.5-p2-g0.75", "measured-only"]
    assert "sfp.predicted_max_error=0.75" in labels["alt-m0.5-p2-g0.75"]


@pytest.mark.parametrize("spec_file,count", [("sfp_ablation.yaml", None), ("sfp_random.yaml", 12)])
def test_shipped_sfp_specs_train_a_different_sequence_in_every_run(spec_file, count):
    """Each run's effective config from the real loader (fit's own load_config on the run's overrides), its
    SFP schedule built as HMMMModule builds it, the sources of a whole run compared literally: within a
    seed no two configurations train the same sequence, and the printed share is the trained one."""
    from dataclasses import replace

    from omegaconf import OmegaConf

    from hm_talker.config.fit import load_config
    from hm_talker.config.sfp import share
    from hm_talker.training.sfp import MEASURED, SFPSchedule

    spec = load_spec(REPO / "sweeps" / spec_file)
    runs = expand(spec, ["data.root=ident"], count=count)
    seqs: dict[tuple, str] = {}
    for r in runs:
        cfg = OmegaConf.to_object(load_config(None, r.overrides))
        steps = cfg.trainer.max_steps
        s = SFPSchedule(replace(cfg.sfp, seed=cfg.sfp.seed + cfg.seed))
        seq = tuple(s.source(t) == MEASURED for t in range(steps))
        key = (cfg.seed, seq, cfg.sfp.predicted_lip_motion if not all(seq) else None)
        assert key not in seqs, f"{r.name} trains what {seqs[key]} trains"
        seqs[key] = r.name
        value, exact = share(cfg.sfp, steps)
        measured = sum(seq) / steps
        assert (measured == value) if exact else abs(measured - value) < 0.04, (r.name, measured, value)
    assert len(seqs) == len(runs) == (39 if count is None else 24)
    assert spec["metric"] == {"name": "val/cross_mouth_r", "goal": "maximize"}  # lip sync on another speaker's speech


def test_spec_axes_win_over_command_line_overrides():
    runs = _dry_run("sweeps/smoke_cpu.yaml", "data.root=ident", "trainer.max_steps=7", "loss.dssim=0.9")
    assert len(runs) == 2
    for r in runs:
        # constants of the spec come first (the command line overrides them), searched axes last
        assert r.index("trainer.max_steps=60") < r.index("trainer.max_steps=7")
        dssim = [o for o in r if o.startswith("loss.dssim=")]
        assert dssim[0] == "loss.dssim=0.9" and dssim[-1] in ("loss.dssim=0.0", "loss.dssim=0.2")
    assert {r[-4] for r in runs} == {"loss.dssim=0.0", "loss.dssim=0.2"}


def test_random_search_is_reproducible_and_within_bounds():
    spec = load_spec(REPO / "sweeps" / "sfp_random.yaml")
    a, b = expand(spec, ["data.root=x"], count=5), expand(spec, ["data.root=x"], count=5)
    assert [r.overrides for r in a] == [r.overrides for r in b]  # a re-submission finds the same runs
    assert len(a) == 5 * 2  # 5 draws x 2 seeds
    p = [r.params["sfp.p_measured"] for r in a]
    assert all(0.1 <= v <= 0.9 for v in p) and len(set(p)) == 5
    assert all(f"-rand-m{r.params['sfp.p_measured']:.3g}-" in r.name for r in a)  # the name says what it trains
    assert not any("sfp.period" in r.params for r in a)  # the random schedule never reads it


# ------------------------------------------------------------------ the size of a plan, counted first
def _big_spec(path: Path, axes=4, n=100) -> Path:
    keys = ["loss.dssim", "loss.l1", "loss.alpha", "loss.lpips"][:axes]
    path.write_text("name: big\nmethod: grid\nparameters:\n" +
                    "".join(f"  {k}: {{values: {[i / 1000 for i in range(n)]}}}\n" for k in keys))
    return path


def test_an_oversized_grid_is_refused_at_once_with_its_count(tmp_path):
    """4 axes x 100 values: 10^8 runs. The old code expanded them into a list (3.3 GB after a minute, no
    output); the count is now a product of the axes, refused before anything is expanded."""
    import time
    import tracemalloc

    from hm_talker.launch.sweep import DEFAULT_MAX_RUNS, SweepPlan

    spec = load_spec(_big_spec(tmp_path / "big.yaml"))
    tracemalloc.start()
    t = time.perf_counter()
    with pytest.raises(InputError) as e:
        SweepPlan(spec, ["data.root=x"])
    elapsed, (_, peak) = time.perf_counter() - t, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 0.5 and peak < 1_000_000, (elapsed, peak)  # no run was built
    assert "100000000 runs (100 x 100 x 100 x 100 configurations x 1 seed)" in str(e.value)
    assert f"--max-runs {DEFAULT_MAX_RUNS}" in str(e.value) and DEFAULT_MAX_RUNS == 1000
    r = _sweep(str(tmp_path / "big.yaml"), "--dry-run", timeout=60)  # the old code: killed by the timeout
    assert r.returncode == 2 and r.stdout == ""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "100000000 runs" in lines[0] and "big.yaml" in lines[0]


def test_max_runs_is_the_limit(tmp_path):
    spec = load_spec(REPO / "sweeps" / "smoke_cpu.yaml")
    assert len(expand(spec, ["data.root=x"], max_runs=2)) == 2
    with pytest.raises(InputError, match="2 runs .* more than --max-runs 1;"):
        expand(spec, ["data.root=x"], max_runs=1)
    r = _sweep("sweeps/smoke_cpu.yaml", "data.root=x", "--max-runs", "1", "--dry-run")
    assert r.returncode == 2 and "--max-runs 1" in r.stderr
    help_text = " ".join(_sweep("--help").stdout.split())
    assert "--max-runs N refuse a sweep of more than N runs" in help_text and "default 1000" in help_text


def test_the_plan_is_checked_one_run_at_a_time(tmp_path, monkeypatch):
    """A 1000-run grid: the first runs come out after checking only themselves (an iterator, not a list)."""
    import itertools

    import hm_talker.validate
    from hm_talker.launch.sweep import SweepPlan

    checked = []
    real = hm_talker.validate.check_fit_config
    monkeypatch.setattr(hm_talker.validate, "check_fit_config", lambda cfg, src=None: checked.append(1) or real(cfg, src))
    spec = load_spec(_big_spec(tmp_path / "g.yaml", axes=3, n=10))
    plan = SweepPlan(spec, ["data.root=x"])
    assert plan.size == 1000
    first = list(itertools.islice(plan, 3))
    assert [r.params["loss.alpha"] for r in first] == [0.0, 0.001, 0.002] and len(checked) <= 3


def test_each_checked_config_is_what_a_fresh_load_gives(tmp_path, monkeypatch):
    """After a key set's first run (a full load), runs merge their own overrides into its config in place:
    every one must equal fit's own load_config of the same overrides (lists replace, mappings flatten)."""
    from omegaconf import OmegaConf

    import hm_talker.validate
    from hm_talker.config.fit import load_config

    seen = {}
    real = hm_talker.validate.check_fit_config
    monkeypatch.setattr(hm_talker.validate, "check_fit_config",
                        lambda cfg, src=None: seen.setdefault(cfg.run.name, OmegaConf.to_container(cfg)) and real(cfg, src))
    spec = tmp_path / "mix.yaml"
    spec.write_text("name: mix\nmethod: grid\nparameters:\n  loss.dssim: {values: [0.0, 0.2]}\n"
                    "  model.upper_aus: {values: [[AU01, AU02, AU04], [AU45]]}\n"
                    "  sfp:\n    values:\n      - {enabled: true, schedule: random, p_measured: 0.25}\n"
                    "      - {enabled: true, schedule: alternate, p_measured: 0.5, period: 4}\n  seed: {values: [0, 1]}\n")
    runs = {r.name: r for r in expand(load_spec(spec), ["data.root=ident"])}
    # every run is checked by check_fit_config: the first of each key set inside its full load, the others
    # after merging their own overrides in place
    assert len(runs) == 16 and len(seen) == 16
    for name, got in seen.items():
        assert got == OmegaConf.to_container(load_config(None, runs[name].overrides)), name


def test_dry_run_of_a_500_run_grid_is_checked_in_seconds(tmp_path):
    """Every run of a 500-run grid through fit's loader and validator: the first run is loaded in full, the
    others merge their own overrides into it (a fresh load is ~50 ms a run: 25 s)."""
    import time

    spec = tmp_path / "g500.yaml"
    spec.write_text("name: g500\nmethod: grid\nparameters:\n"
                    f"  loss.dssim: {{values: {[i / 100 for i in range(25)]}}}\n"
                    f"  loss.l1: {{values: {[1 + i / 10 for i in range(10)]}}}\n  seed: {{values: [0, 1]}}\n")
    t = time.perf_counter()
    r = _sweep(str(spec), "--dry-run")
    elapsed = time.perf_counter() - t
    lines = [ln for ln in r.stdout.splitlines() if not ln.startswith("#")]
    assert r.returncode == 0 and len(lines) == 500 and len({_name(ln.split()) for ln in lines}) == 500
    assert r.stdout.startswith("# sweep g500: 500 runs (25 x 10 configurations x 2 seeds)\n")
    # a full load per run would take 25 s and more; measured: 5.5-10 s on 2 shared cores, 2.5-4 s of it
    # the CLI's start (it imports torch)
    assert elapsed < 20, elapsed


# ------------------------------------------------------------------ a plan is checked before anything is written
BAD_PLANS = {
    "unknown-parameter-key": ("name: s\nmethod: grid\nparameters:\n  loss.nope: {values: [0.0, 0.2]}\n", [],
                              "unknown config key loss.nope (a parameter of the spec)"),
    "unknown-override": ("name: s\nmethod: grid\nparameters:\n  loss.dssim: {values: [0.0, 0.2]}\n", ["loss.bogus=1"],
                         "unknown config key loss.bogus (a command-line override)"),
    "name-escapes": ("name: ../../evil\nmethod: grid\nparameters:\n  loss.dssim: {values: [0.0, 0.2]}\n", [],
                     "name='../../evil' must be one name"),
    "share-the-cycle-cannot-hold": ("name: s\nmethod: grid\nparameters:\n  sfp.p_measured: {values: [0.5, 0.25]}\n", [],
                                    "run 1 (sfp.p_measured=0.25 seed=0): sfp.p_measured=0.25 with sfp.period=2"),
    "period-under-random": ("name: s\nmethod: grid\nparameters:\n  sfp.schedule: {value: random}\n"
                            "  sfp.period: {values: [2, 4]}\n", [], "sfp.period=4 with sfp.schedule=random"),
    "same-sequence-twice": ("name: s\nmethod: grid\nparameters:\n  sfp.seed: {values: [0, 1]}\n", [],
                            "runs s-391f10ca-seed0 and s-b43dd6f2-seed0 train the same thing"),
    "too-many-runs": ("name: s\nmethod: grid\nparameters:\n  loss.dssim: {values: [0.0, 0.1, 0.2]}\n"
                      "  seed: {values: [0, 1]}\n", ["--max-runs", "5"], "6 runs (3 configurations x 2 seeds)"),
}

FIRST_RUN_BAD = {"unknown-parameter-key", "unknown-override", "name-escapes", "too-many-runs"}


@pytest.mark.parametrize("case", list(BAD_PLANS))
@pytest.mark.parametrize("mode", ["--dry-run", "local"])
def test_a_bad_plan_is_one_line_exit_2_and_writes_nothing(case, mode, tmp_path):
    text, extra, expected = BAD_PLANS[case]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "spec.yaml").write_text(text)
    runs = tmp_path / "runs"
    args = [str(tmp_path / "in" / "spec.yaml"), "data.root=ident", f"run.dir={runs}", *extra]
    r = _sweep(*args, *(["--dry-run"] if mode == "--dry-run" else ["--launcher", "local"]), cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert expected in lines[0] and "spec.yaml" in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["in", "spec.yaml"]  # no plan, no run folder
    # a launch checks the whole plan before it prints, writes or submits anything; a dry run streams:
    # it has printed the runs checked before the bad one (run 1 in three of these plans), nothing else
    printed = [ln for ln in r.stdout.splitlines() if not ln.startswith("#")]
    assert len(printed) == (0 if mode == "local" or case in FIRST_RUN_BAD else 1), r.stdout


def test_dry_run_without_data_root_checks_with_a_placeholder_and_a_launch_needs_it(tmp_path):
    r = _sweep("sweeps/smoke_cpu.yaml", "--dry-run")
    assert r.returncode == 0 and "# no data.root given: runs checked with data.root=DATA_ROOT" in r.stdout
    runs = [ln for ln in r.stdout.splitlines() if not ln.startswith("#")]
    assert len(runs) == 2 and not any("DATA_ROOT" in ln or "data.root" in ln for ln in runs)  # not in the runs
    r = _sweep(str(REPO / "sweeps" / "smoke_cpu.yaml"), f"run.dir={tmp_path / 'runs'}", "--launcher", "local",
               cwd=tmp_path)
    assert r.returncode == 2 and "data.root is not set" in r.stderr and not (tmp_path / "runs").exists()


def test_all_shipped_specs_pass_their_own_checks():
    for spec_file in sorted((REPO / "sweeps").glob("*.yaml")):
        spec = load_spec(spec_file)
        runs = expand(spec, ["data.root=ident"], count=4)
        assert runs and len({r.name for r in runs}) == len(runs)
        # a spec that drives with another speaker's video ranks by following it; the others by self-driven sync
        cross = "eval.drive_video" in spec["parameters"]
        metric = "val/cross_mouth_r" if cross else "val/mouth_r"
        assert spec["metric"] == {"name": metric, "goal": "maximize"}, spec_file


def test_bad_specs_are_input_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: grid\nparameters: {seed: {values: []}}\n")
    with pytest.raises(InputError):
        load_spec(bad)
    bad.write_text("method: hyperband\nparameters: {seed: {values: [0]}}\n")
    with pytest.raises(InputError):
        load_spec(bad)
    with pytest.raises(InputError):
        load_spec(tmp_path / "missing.yaml")


def test_wandb_launcher_offline_is_one_line_exit_2():
    env = {"WANDB_MODE": "offline", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "hm_talker.cli", "sweep", "sweeps/smoke_cpu.yaml", "data.root=x",
                        "--launcher", "wandb"], capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.startswith("hm-talker:")]
    assert len(lines) == 1 and "W&B server" in lines[0]


def test_compare_sweep_rows_per_configuration_flags_missing_seeds(tmp_path):
    """`compare --sweep`: one row per configuration with the mean over its seeds, the best one named,
    and a configuration with a seed missing flagged in its row instead of averaged as complete."""
    import json

    from hm_talker.launch.sweep import write_plan

    spec = load_spec(REPO / "sweeps" / "smoke_cpu.yaml")
    spec["parameters"]["seed"] = {"values": [0, 1]}
    runs = expand(spec, [f"run.dir={tmp_path}"])
    write_plan(spec, runs, [f"run.dir={tmp_path}"], None)
    mouth_r = {(0.0, 0): 0.20, (0.0, 1): 0.22, (0.2, 0): 0.25}  # (dssim, seed) -> val/mouth_r; (0.2, 1) unfinished
    for r in runs:
        key = (r.params["loss.dssim"], r.params["seed"])
        if key in mouth_r:
            (tmp_path / r.name).mkdir()
            (tmp_path / r.name / "summary.json").write_text(json.dumps(
                {"name": r.name, "group": "smoke-cpu", "seed": key[1], "config": {},
                 "metrics": {"val/mouth_r": mouth_r[key], "psnr_val": 20.0}}))
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, "-m", "hm_talker.cli", "compare", "--sweep", "smoke-cpu", "--runs",
                        str(tmp_path), "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    table = json.loads((out / "comparison.json").read_text())
    assert table["groups"] == ["loss.dssim=0.0", "loss.dssim=0.2 [1/2 seeds]"]
    assert table["stats"]["loss.dssim=0.0"]["val/mouth_r"]["mean"] == pytest.approx(0.21)
    assert abs(table["stats"]["loss.dssim=0.0"]["val/mouth_r"]["std"] - 0.02 ** 0.5 / 10) < 1e-9
    assert "incomplete: loss.dssim=0.2: 1 of 2 seeds finished" in r.stdout
    # the spec's metric (lip sync, not PSNR) picks the best configuration
    assert "best configuration by val/mouth_r (maximize): loss.dssim=0.2 [1/2 seeds]" in r.stdout
    assert any(p.name.startswith("metric_") and "mouth_r" in p.name for p in out.iterdir())


@pytest.mark.slow
def test_local_launcher_runs_each_configuration_then_skips_them(identity64, tmp_path):
    """`sweep --launcher local`: both runs train (their own config each), a second call trains nothing."""
    import json
    import os

    from conftest import SMALL

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: local-test\nmethod: grid\nparameters:\n  loss.dssim: {values: [0.0, 0.2]}\n")
    args = [str(spec), f"data.root={identity64}", f"run.dir={tmp_path}", "trainer.max_steps=2",
            "trainer.val_every=2", "trainer.limit_val_batches=1", *SMALL, "--launcher", "local"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}
    r = subprocess.run([sys.executable, "-m", "hm_talker.cli", "sweep", *args], capture_output=True, text=True,
                       timeout=900, cwd=REPO, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2/2 runs finished" in r.stdout
    summaries = [json.loads(p.read_text()) for p in tmp_path.glob("local-test-*/summary.json")]
    assert sorted(s["config"]["loss.dssim"] for s in summaries) == [0.0, 0.2]
    r = subprocess.run([sys.executable, "-m", "hm_talker.cli", "sweep", *args], capture_output=True, text=True,
                       timeout=900, cwd=REPO, env=env)
    assert r.returncode == 0 and r.stdout.count(": finished") == 2, r.stdout
