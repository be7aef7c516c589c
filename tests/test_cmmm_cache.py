"""The CMMM cache (issue 18): stage 1 trained once for every run (and rank) that asks for the same one."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import REPO, SMALL

STAGE1 = """
import sys, logging
from pathlib import Path
from hm_talker.config.fit import load_config
from hm_talker.data.identity import load_manifest, speech_rows
from hm_talker.training.stage1 import stage1_checkpoint
logging.basicConfig(level=logging.INFO, format="%(message)s")
root, run_dir, rank = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
cfg = load_config(None, [f"data.root={root}", "cmmm.pretrain_steps=60", "cmmm.pretrain_batch_size=16"])
m = load_manifest(root)
k, d = m["features"]["audio"]["shape"]
cfg.model.audio.rows_per_frame, cfg.model.audio.feature_dim = int(k), int(d)
cfg.cmmm.net.speech_rows = speech_rows(m)
print("CKPT", stage1_checkpoint(cfg, root, run_dir, rank))
"""


def _start(identity, run_dir: Path, rank: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", STAGE1, str(identity), str(run_dir), str(rank)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_processes_asking_at_once_make_one_entry(identity64, tmp_path):
    """Two tasks of a sweep (rank 0 each) and a rank 1 of one of them: one training, one entry, all load it."""
    procs = [_start(identity64, tmp_path / f"run{i}", rank) for i, rank in ((0, 0), (1, 0), (2, 1))]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    trained = sum(o.count("CMMM stage 1 on") for o in outs)
    assert trained == 1, outs  # one of the three trained it
    ckpts = {o.split("CKPT ")[1].strip() for o in outs}
    assert len(ckpts) == 1, ckpts
    entries = list((tmp_path / "cmmm-cache").iterdir())
    assert len(entries) == 1 and sorted(p.name for p in entries[0].iterdir()) == ["last.ckpt", "stage1.json"]


def test_sfp_settings_share_stage1_and_a_seed_does_not(identity64, tmp_path, caplog):
    """Two fits that differ in SFP only share one stage 1; another seed trains its own."""
    import logging

    from hm_talker.training.fit import fit

    base = [f"data.root={identity64}", f"run.dir={tmp_path}", "trainer.max_steps=2", "eval.lip_sync=false", *SMALL]
    with caplog.at_level(logging.INFO, logger="hm_talker"):
        fit(None, [*base, "run.name=a", "sfp.enabled=false"], False)
        fit(None, [*base, "run.name=b", "sfp.p_measured=0.5"], False)
        fit(None, [*base, "run.name=c", "seed=1"], False)
    msgs = [r.getMessage() for r in caplog.records]
    assert len([m for m in msgs if m.startswith("CMMM stage 1 on")]) == 2, msgs
    assert len([m for m in msgs if m.startswith("CMMM stage 1: reusing")]) == 1, msgs
    assert len(list((tmp_path / "cmmm-cache").iterdir())) == 2
    assert not (tmp_path / "a" / "cmmm").exists()  # nothing per run any more


def test_waiting_ranks_report_a_failed_stage1(identity64, tmp_path):
    """Rank 0's stage 1 raises: the failure is left for the waiting rank, which stops with one line."""
    from hm_talker.config.fit import load_config
    from hm_talker.errors import InputError
    from hm_talker.training.cmmm_cache import cached_stage1
    from hm_talker.training.stage1 import stage1_config

    cfg = stage1_config(load_config(None, [f"data.root={identity64}"]), identity64)
    started = threading.Event()

    def failing(c, path):
        started.set()
        raise RuntimeError("CUDA out of memory")

    errors = []

    def rank1():
        started.wait(30)
        try:
            cached_stage1(cfg, tmp_path, 1, 60, failing)
        except InputError as exc:
            errors.append(str(exc))

    t = threading.Thread(target=rank1)
    t.start()
    with pytest.raises(RuntimeError):
        cached_stage1(cfg, tmp_path, 0, 60, failing)
    t.join(60)
    assert len(errors) == 1 and "failed on rank 0: RuntimeError: CUDA out of memory" in errors[0], errors
    # the next attempt retrains (and clears the failure)
    ok = cached_stage1(cfg, tmp_path, 0, 60, lambda c, p: p.write_bytes(b"weights") or {})
    assert ok.read_bytes() == b"weights" and not (ok.parent / "failed.txt").exists()


def test_a_waiting_rank_times_out_with_one_line(identity64, tmp_path):
    from hm_talker.config.fit import load_config
    from hm_talker.errors import InputError
    from hm_talker.training.cmmm_cache import cached_stage1
    from hm_talker.training.stage1 import stage1_config

    cfg = stage1_config(load_config(None, [f"data.root={identity64}"]), identity64)
    with pytest.raises(InputError, match="did not appear within 0 s"):
        cached_stage1(cfg, tmp_path, 1, 0, None)


def test_the_requeue_signal_during_stage1_keeps_nothing(identity64, tmp_path):
    """SIGUSR1 in stage 1 (the flag set after its first step): stage 1 stops, raises Preempted, and leaves
    no cache entry and no failure marker, so the requeued job trains it again."""
    from hm_talker.config.fit import load_config
    from hm_talker.data.identity import load_manifest, speech_rows
    from hm_talker.training.preemption import Preempted
    from hm_talker.training.stage1 import stage1_checkpoint

    cfg = load_config(None, [f"data.root={identity64}", "cmmm.pretrain_steps=50", "cmmm.pretrain_batch_size=8"])
    m = load_manifest(identity64)
    k, d = m["features"]["audio"]["shape"]
    cfg.model.audio.rows_per_frame, cfg.model.audio.feature_dim = int(k), int(d)
    cfg.cmmm.net.speech_rows = speech_rows(m)
    calls = []

    def signalled():  # asked after every stage-1 step (and by the waiting loop): true from the 3rd look on
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(Preempted):
        stage1_checkpoint(cfg, identity64, tmp_path / "run", 0, should_stop=signalled)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == [], left  # the entry's lock and the folders it made are gone with it
    assert len(calls) < 10  # it stopped within a few steps, not after all 50
