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
