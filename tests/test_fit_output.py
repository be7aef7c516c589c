"""What `hm-talker fit` prints: progress lines on stdout, each log line once and clean on stderr."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

from conftest import REPO, SMALL

PROGRESS = re.compile(r"^step (\d+)/4 \| [\d.]+ steps/s \| loss [\d.]+ \| psnr [\d.]+ dB \| left \d+:\d\d:\d\d$")


def test_fit_prints_progress_and_each_log_line_once(identity64, tmp_path):
    """A real 4-step `python -m hm_talker.cli fit` in a subprocess (stdout a pipe, as under SLURM):
    stdout holds one plain progress line per 2 steps with
    step, steps/s, loss, PSNR and time left; every stderr line carries the `hm-talker:` prefix, none
    repeats (Lightning's INFO lines came twice), no advert, no deprecation notice, no path:line. Then the same with `fit -q`: no INFO line."""
    # a fresh W&B service per process (in-process fits of other tests leave WANDB_SERVICE set)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}
    env.update(PYTHONPATH=str(REPO), WANDB_MODE="offline")
    cmd = [sys.executable, "-m", "hm_talker.cli", "fit", f"data.root={identity64}", f"run.dir={tmp_path}",
           "trainer.max_steps=4", "trainer.progress_every=2", "trainer.log_every=1",
           "trainer.limit_val_batches=1", *SMALL]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout.splitlines()
    steps = [int(m.group(1)) for m in map(PROGRESS.match, out) if m]
    assert steps == [2, 4], out
    assert out[-1].endswith("dB") and "psnr_val=" in out[-1]
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert err and all(ln.startswith("hm-talker: ") for ln in err), err
    assert max(Counter(err).values()) == 1, err
    assert any("max_steps=4" in ln for ln in err)  # Lightning's INFO lines still come, once
    text = proc.stderr.lower()
    for bad in ("tip:", "litlogger", "deprecat", ".py:"):
        assert bad not in text, (bad, err)

    quiet = subprocess.run([*cmd[:4], "-q", *cmd[4:], "run.name=quiet"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=600)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "INFO" not in quiet.stderr  # -q after the subcommand: warnings and errors only


def test_verbosity_flags_go_before_or_after_the_subcommand():
    """-q / -v parse in both places (the subcommand's copy does not reset the top-level one)."""
    from hm_talker.cli import build_parser

    p = build_parser()
    assert p.parse_args(["-q", "fit", "a=1"]).quiet is True
    assert p.parse_args(["fit", "-q", "a=1"]).quiet is True
    assert p.parse_args(["fit", "a=1"]).quiet is False
    a = p.parse_args(["preprocess", "x.mp4", "--out", "o", "-v"])
    assert a.verbose is True and a.quiet is False
    assert p.parse_args(["-v", "infer", "--ckpt", "c", "--audio", "a", "--out", "o"]).verbose is True
