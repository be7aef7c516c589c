"""One writer per output folder (issue 19, item 1): two real processes on one --out, stale locks,
locks from other hosts, SLURM requeues, the DDP rule, and the lock never counting as content."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hm_talker.errors import InputError
from hm_talker.output_lock import LOCK, OutputLock, holder_record
from hm_talker.safe_output import MARKER, output_dir, read_marker

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}


def dead_pid() -> int:
    """The pid of a process that has ended (reaped: nothing runs under it)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def write_lock(folder: Path, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"tool": "hm-talker", "command": "preprocess", "pid": dead_pid(), "host": socket.gethostname(),
              "boot_id": holder_record("")["boot_id"], "started": "2020-01-01 00:00:00 +0000", **fields}
    (folder / LOCK).write_text(json.dumps(record))
    return folder / LOCK


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hm_talker.cli", "-q", *args]


def _sigint_as_in_a_terminal() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_preprocess(clip: Path, out: Path, log: Path) -> subprocess.Popen:
    """`hm-talker preprocess CLIP --out OUT --size 64` in a real process, returned once it holds OUT's
    lock (output to a file: a full pipe would stall it)."""
    with open(log, "w") as fh:  # Ctrl-C as in a terminal: a suite started in the background (`cmd &` without job
        # control) hands its children SIGINT ignored, and Python then keeps ignoring it
        proc = subprocess.Popen(cli("preprocess", str(clip), "--out", str(out), "--size", "64",
                                    "--shard-frames", "16"), env=ENV, cwd=log.parent, stdout=fh, stderr=fh,
                                preexec_fn=_sigint_as_in_a_terminal)
    deadline = time.time() + 120
    while not (out / LOCK).is_file():  # the lock is held from the start of the run to its end
        assert proc.poll() is None and time.time() < deadline, log.read_text()[-2000:]
        time.sleep(0.05)
    return proc


def test_two_real_preprocess_processes_on_one_out(synthetic_clip, tmp_path):
    """The issue's reproduction: the second preprocess exits 2 at once with one line naming the folder
    and the holder (pid, host); the first finishes and its identity is complete and its own."""
    out = tmp_path / "o" / "x"
    log1 = tmp_path / "first.log"
    first = start_preprocess(synthetic_clip.path, out, log1)
    holder = json.loads((out / LOCK).read_text())
    assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()

    t0 = time.time()
    second = subprocess.run(cli("preprocess", str(synthetic_clip.path), "--out", str(out), "--size", "32"),
                            env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    took = time.time() - t0
    first_running = first.poll() is None
    first.wait(timeout=600)

    assert second.returncode == 2, second.stderr[-2000:]
    lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hm-talker: error: "), lines
    assert str(out) in lines[0] and f"pid {first.pid}" in lines[0] and socket.gethostname() in lines[0], lines
    assert second.stdout == ""
    assert first_running, f"the second process should fail while the first runs (it took {took:.1f} s)"

    assert first.returncode == 0, log1.read_text()[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_frames"] == 150 and manifest["size"] == 64  # the first's settings, not 32 px
    assert not (out / LOCK).exists()
    listed = set(read_marker(out))
    assert listed == set(os.listdir(out)) - {MARKER} and LOCK not in listed


def test_ctrl_c_and_sigterm_release_the_lock(synthetic_clip, tmp_path):
    """A preprocess interrupted by Ctrl-C (SIGINT) or SIGTERM exits 130 and leaves no lock behind."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        out = tmp_path / f"o{int(sig)}"
        proc = start_preprocess(synthetic_clip.path, out, tmp_path / f"{int(sig)}.log")
        proc.send_signal(sig)
        assert proc.wait(timeout=120) == 130, (tmp_path / f"{int(sig)}.log").read_text()[-2000:]
        assert not (out / LOCK).exists()
        assert not out.exists() or LOCK not in os.listdir(out)


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, capsys):
    """A lock left by a killed run (dead pid, this host) is taken over: one warning, the run completes,
    no lock remains."""
    from hm_talker.cli import main

    runs = tmp_path / "runs" / "a"
    runs.mkdir(parents=True)
    (runs / "summary.json").write_text(json.dumps({"metrics": {"psnr": 30.0}, "config": {}}))
    out = tmp_path / "cmp"
    lock = write_lock(out, command="compare")
    stale_pid = json.loads(lock.read_text())["pid"]
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "runs"), "--out", str(out)]) == 0
    taken = [ln for ln in capsys.readouterr().err.splitlines() if "taking over the lock" in ln]
    assert len(taken) == 1 and f"pid {stale_pid}" in taken[0] and "no longer running" in taken[0], taken
    assert not (out / LOCK).exists() and (out / "comparison.md").is_file()
    assert LOCK not in read_marker(out)


def test_a_live_holder_is_refused_and_keeps_its_lock(tmp_path):
    """A real process holding --out: a second guard fails naming it; the holder's lock and files stay."""
    out = tmp_path / "ev"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom hm_talker.safe_output import output_dir\n"
        "with output_dir(sys.argv[1], 'evaluate') as o:\n"
        "    (o / 'metrics.json').write_text('{}'); print('held', flush=True); time.sleep(60)\n"), str(out)],
        env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError) as err:
            with output_dir(out, "evaluate"):
                pytest.fail("the second writer must not run")
        msg = str(err.value)
        assert msg.startswith(f"{out}: in use by another hm-talker run (evaluate pid {holder.pid} on host "
                              f"{socket.gethostname()}"), msg
        assert sorted(os.listdir(out)) == [LOCK, "metrics.json"]
    finally:
        holder.kill()
        holder.wait()
    # killed (SIGKILL: no cleanup): the next run takes the lock over
    with output_dir(out, "evaluate"):
        pass
    assert sorted(os.listdir(out)) == [MARKER, "metrics.json"]


def test_fit_refuses_a_run_dir_another_process_holds(identity64, tmp_path):
    """Two `fit` of one run.dir/run.name (a resubmitted job beside a running one): the second stops at
    once with exit 2, before any training; the first's files are untouched."""
    from bad_input_cases import fit_argv, snapshot
    from hm_talker.cli import main

    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    lock = OutputLock(run_dir, "fit", "run directory (run.dir/run.name)").acquire()  # this process: a live holder
    try:
        (run_dir / "config.yaml").write_text("a: 1\n")
        before = snapshot(tmp_path)
        assert main(["-q", *fit_argv({"ident": identity64}, tmp_path, "run.name=r")]) == 2
        assert snapshot(tmp_path) == before
    finally:
        lock.release()
    assert sorted(os.listdir(run_dir)) == ["config.yaml"]


def test_secondary_ddp_ranks_take_no_lock(tmp_path, monkeypatch):
    """Under DDP only rank zero guards (and locks) RUN_DIR: the other ranks run inside it."""
    from hm_talker.training.run_guard import run_dir_guard

    run_dir = tmp_path / "run"
    with run_dir_guard(run_dir, run_dir / "checkpoints" / "last.ckpt"):
        assert (run_dir / LOCK).is_file()
        monkeypatch.setenv("LOCAL_RANK", "1")
        with run_dir_guard(run_dir, run_dir / "checkpoints" / "last.ckpt"):  # rank 1 of the same job
            (run_dir / "config.yaml").write_text("a: 1\n")
        monkeypatch.delenv("LOCAL_RANK")
    assert not (run_dir / LOCK).exists() and "config.yaml" in read_marker(run_dir)


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    out = tmp_path / "ev"
    lock = write_lock(out, host="gpu-node-17", pid=4242)
    with pytest.raises(InputError) as err:
        with output_dir(out, "evaluate"):
            pass
    msg = str(err.value)
    assert "pid 4242 on host gpu-node-17" in msg and f"delete {lock}" in msg and "\n" not in msg
    assert lock.is_file()  # untouched: that run may still be writing


def test_a_reused_pid_and_an_earlier_boot_count_as_gone(tmp_path, caplog):
    """A live pid that now runs another program (its start time differs), or a lock from before this
    host's last reboot: the holder is gone."""
    me = holder_record("")
    for name, fields in (("reused", {"pid": 1, "proc_start": "-5"}),  # pid 1 runs, but started otherwise
                         ("reboot", {"pid": 1, "boot_id": "another-boot"})):
        if name == "reboot" and not me["boot_id"]:
            continue
        out = tmp_path / name
        write_lock(out, **fields)
        with caplog.at_level(logging.WARNING, logger="hm_talker"):
            with output_dir(out, "evaluate"):
                pass
        assert not (out / LOCK).exists(), name
    assert sum("taking over the lock of preprocess pid 1" in r.getMessage() for r in caplog.records) >= 1


def test_a_live_pid_on_this_host_is_busy(tmp_path):
    out = tmp_path / "ev"
    write_lock(out, pid=1, proc_start="")  # pid 1 always runs
    with pytest.raises(InputError, match="in use by another hm-talker run .*pid 1 on host"):
        with output_dir(out, "evaluate"):
            pass


def test_slurm_requeue_takes_over_its_earlier_start(tmp_path, monkeypatch):
    """A requeued SLURM job (same job id, next restart count) on another node takes over the lock its
    killed first start left; a different job on that node is refused."""
    out = tmp_path / "run"
    write_lock(out, host="node-a", pid=777, slurm_job="123", slurm_restart="0")
    monkeypatch.setenv("SLURM_JOB_ID", "124")
    with pytest.raises(InputError, match="host node-a"):
        with output_dir(out, "fit"):
            pass
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with output_dir(out, "fit"):
        pass
    assert not (out / LOCK).exists()


def test_failure_and_interrupt_remove_the_lock_and_a_new_folder(tmp_path):
    for exc in (ValueError("boom"), KeyboardInterrupt()):
        out = tmp_path / "new" / "ev"
        with pytest.raises(type(exc)):
            with output_dir(out, "evaluate") as o:
                assert (o / LOCK).is_file()
                (o / "metrics.json").write_text("{}")
                raise exc
        assert not (tmp_path / "new").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(KeyboardInterrupt):
        with output_dir(existing, "evaluate"):
            raise KeyboardInterrupt
    assert os.listdir(existing) == []


def test_the_lock_is_not_content(tmp_path):
    """A folder holding only a stale lock counts as empty; a user's folder gets no lock file."""
    out = tmp_path / "stale_only"
    write_lock(out)
    with output_dir(out, "evaluate") as o:
        (o / "metrics.json").write_text("{}")
    assert read_marker(out) == ["metrics.json"]
    users = tmp_path / "Documents"
    users.mkdir()
    (users / "thesis.txt").write_text("mine")
    with pytest.raises(InputError, match="did not write"):
        with output_dir(users, "evaluate"):
            pass
    assert os.listdir(users) == ["thesis.txt"]


def test_an_unreadable_lock_file_names_itself(tmp_path):
    out = tmp_path / "ev"
    out.mkdir()
    (out / LOCK).write_text("not json")
    with pytest.raises(InputError, match=f"names no hm-talker run .*{LOCK}.*delete it"):
        with output_dir(out, "evaluate"):
            pass
    assert (out / LOCK).read_text() == "not json"


def test_without_hard_links_the_lock_is_made_with_o_excl(tmp_path, monkeypatch):
    """Filesystems without hard links (some FUSE, vfat): the lock is created with O_CREAT|O_EXCL, and a
    second writer is still refused."""
    import errno

    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    out = tmp_path / "ev"
    with output_dir(out, "evaluate"):
        holder = json.loads((out / LOCK).read_text())
        assert holder["pid"] == os.getpid() and sorted(os.listdir(out)) == [LOCK]
        with pytest.raises(InputError, match=f"pid {os.getpid()} on host"):
            OutputLock(out, "evaluate").acquire()
    assert os.listdir(out) == [MARKER]
