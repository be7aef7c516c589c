"""The requeue signal and ffmpeg children (hm_talker/child_signals.py). SLURM sends `--signal=USR1@T` to every
process of a job step, children included. CI caught the failure this guards: the signal reached a SLURM
training job while its final validation was encoding a video, ffmpeg exited on it ("ffmpeg failed writing the
video (no message)"), and the job FAILED instead of requeueing. Here the signal goes to the real ffmpeg of a
VideoWriter and of a frame reader mid-stream: both finish their work, and the process's own handler still
receives a signal sent to it."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import numpy as np

from hm_talker.child_signals import REQUEUE_SIGNAL, requeue_signal_blocked, run_child
from hm_talker.preprocess.media import iter_frames, probe_video
from hm_talker.video_writer import VideoWriter


def _frames(n: int, size: int = 32) -> np.ndarray:
    ramp = np.linspace(0, 255, n, dtype=np.uint8)
    return np.broadcast_to(ramp[:, None, None, None], (n, size, size, 3)).copy()


def test_an_unshielded_child_dies_of_the_signal():  # the premise: SIGUSR1's default action is to exit
    child = subprocess.Popen(["sleep", "5"])
    time.sleep(0.2)
    os.kill(child.pid, REQUEUE_SIGNAL)
    assert child.wait(timeout=5) == -REQUEUE_SIGNAL


def test_the_video_writers_ffmpeg_outlives_the_signal(tmp_path):
    received = []
    previous = signal.signal(REQUEUE_SIGNAL, lambda *_: received.append(True))
    try:
        writer = VideoWriter(tmp_path / "v.mp4", 32, 32, 25)
        writer.write(_frames(20))
        os.kill(writer._ff.pid, REQUEUE_SIGNAL)  # what SLURM does to every process of the step
        time.sleep(0.3)
        writer.write(_frames(20))
        path = writer.close()
        os.kill(os.getpid(), REQUEUE_SIGNAL)  # the fit's handler is not blocked by the shield
        time.sleep(0.1)
    finally:
        signal.signal(REQUEUE_SIGNAL, previous)
    assert probe_video(path).num_frames == 40
    assert received == [True]


def test_a_frame_readers_ffmpeg_outlives_the_signal(tmp_path):
    path = tmp_path / "v.mp4"
    with VideoWriter(path, 32, 32, 25) as w:
        w.write(_frames(60))
    frames = iter_frames(path, np.arange(60), chunk=4)
    first = next(frames)
    pids = [p for p in _ffmpeg_children()]
    assert pids, "the reader's ffmpeg is running"
    for pid in pids:
        os.kill(pid, REQUEUE_SIGNAL)
    time.sleep(0.3)
    assert len(first) + sum(len(c) for c in frames) == 60


def test_the_synthetic_clips_encoder_outlives_the_signal(tmp_path):
    """The demo's synthetic clip (hm_talker/synthetic/clip.py) pipes its frames to an ffmpeg encoder: a signal
    sent to that ffmpeg while frames are still coming (from another thread, as SLURM's would) leaves a
    whole clip."""
    from hm_talker.synthetic import make_synthetic_clip

    signalled = []

    def signal_the_encoder():
        deadline = time.monotonic() + 20
        while not signalled and time.monotonic() < deadline:
            for pid in _ffmpeg_children():
                os.kill(pid, REQUEUE_SIGNAL)
                signalled.append(pid)
            time.sleep(0.005)

    sender = threading.Thread(target=signal_the_encoder)
    sender.start()
    clip = make_synthetic_clip(tmp_path / "s.mp4", seconds=4.0, size=128, seed=1)
    sender.join()
    assert signalled, "the encoder was signalled while it ran"
    assert probe_video(clip.path).num_frames == 100


def test_a_short_child_of_run_child_outlives_the_signal():
    """The probes and sound decodes of a fit (ffprobe, ffmpeg to f32) go through run_child: a child that gets
    the signal mid-run (here it sends the signal to itself) finishes and its output comes back; the same
    command started plainly dies of it."""
    cmd = ["sh", "-c", "kill -USR1 $$; echo survived"]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == -REQUEUE_SIGNAL and plain.stdout == ""
    shielded = run_child(cmd, text=True)
    assert (shielded.returncode, shielded.stdout) == (0, "survived\n")
    failed = run_child(["sh", "-c", "printf abc; echo why >&2; exit 3"])
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, b"abc", b"why\n")


def test_a_signal_sent_while_blocked_is_delivered_after():
    """To this thread: a signal sent to the whole process goes to any thread that does not block it (a test
    process has library threads), which is also not lost, but only the blocked thread's own can be held."""
    received = []
    previous = signal.signal(REQUEUE_SIGNAL, lambda *_: received.append(True))
    try:
        with requeue_signal_blocked():
            signal.pthread_kill(threading.get_ident(), REQUEUE_SIGNAL)
            time.sleep(0.05)
            assert received == []  # pending, not lost
        time.sleep(0.05)
    finally:
        signal.signal(REQUEUE_SIGNAL, previous)
    assert received == [True]


def _ffmpeg_children() -> list[int]:
    me, out = os.getpid(), []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            name, ppid = stat[stat.index("(") + 1:stat.rindex(")")], int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == me and name == "ffmpeg":
                out.append(int(d))
    return out
