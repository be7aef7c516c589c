"""`hm-talker sweep`: expansion of W&B-format specs into runs (no SLURM, no training)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hm_talker.errors import InputError
from hm_talker.launch.sweep import expand, load_spec

REPO = Path(__file__).resolve().parents[1]


def _dry_run(spec: str, *extra: str) -> list[list[str]]:
    r = subprocess.run([sys.executable, "-m", "hm_talker.cli", "sweep", str(REPO / spec), *extra, "--dry-run"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return [line.split() for line in r.stdout.splitlines()]


def test_sfp_ablation_dry_run_is_the_full_grid_with_unique_names():
    runs = _dry_run("sweeps/sfp_ablation.yaml", "data.root=ident", "run.dir=runs")
    assert len(runs) == 3 * 3 * 3 * 3  # schedule x p_measured x period x seeds
    names = [next(o for o in r if o.startswith("run.name=")) for r in runs]
    assert len(set(names)) == len(runs)
    assert all("run.group=sfp-ablation" in r and "data.root=ident" in r for r in runs)
    combos = {tuple(o for o in r if o.startswith(("sfp.schedule=", "sfp.p_measured=", "sfp.period=", "seed=")))
              for r in runs}
    assert len(combos) == 81  # every cell of the grid once
    # the three seeds of one configuration share its id, only the seed differs
    ids = {n.split("=")[1].rsplit("-seed", 1)[0] for n in names}
    assert len(ids) == 27


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
    assert all(1 <= r.params["sfp.period"] <= 16 and isinstance(r.params["sfp.period"], int) for r in a)


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
    psnr = {(0.0, 0): 20.0, (0.0, 1): 22.0, (0.2, 0): 25.0}  # (dssim, seed) -> psnr_val; (0.2, 1) unfinished
    for r in runs:
        key = (r.params["loss.dssim"], r.params["seed"])
        if key in psnr:
            (tmp_path / r.name).mkdir()
            (tmp_path / r.name / "summary.json").write_text(json.dumps(
                {"name": r.name, "group": "smoke-cpu", "seed": key[1], "config": {},
                 "metrics": {"psnr_val": psnr[key]}}))
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, "-m", "hm_talker.cli", "compare", "--sweep", "smoke-cpu", "--runs",
                        str(tmp_path), "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    table = json.loads((out / "comparison.json").read_text())
    assert table["groups"] == ["loss.dssim=0.0", "loss.dssim=0.2 [1/2 seeds]"]
    assert table["stats"]["loss.dssim=0.0"]["psnr_val"]["mean"] == 21.0
    assert abs(table["stats"]["loss.dssim=0.0"]["psnr_val"]["std"] - 2 ** 0.5) < 1e-9
    assert "incomplete: loss.dssim=0.2: 1 of 2 seeds finished" in r.stdout
    assert "best configuration by psnr_val (maximize): loss.dssim=0.2 [1/2 seeds]" in r.stdout
    assert (out / "metric_psnr_val.png").is_file()


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
