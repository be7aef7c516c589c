"""Chunked frame decoding (`iter_frames`, what preprocessing, evaluation and clip reading use): the pixels
decord gives, every requested frame in order, memory that holds a chunk however slowly it is consumed
(decord's reader decoded the rest of the clip in the background while the caller scored a chunk), no
ffmpeg left behind, and clear errors."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from hm_talker.errors import InputError
from hm_talker.preprocess.media import iter_frames, resample_indices


def _testsrc(path: Path, size: str, seconds: float, rate: int = 25) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate={rate}", "-t", f"{seconds:g}", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _children() -> set[int]:
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        pids |= {int(p) for p in (task / "children").read_text().split()}
    return pids


@pytest.mark.parametrize("size", [None, (160, 120)])
def test_frames_equal_decords_in_order_with_repeats(tmp_path, size):
    decord = pytest.importorskip("decord")
    video = _testsrc(tmp_path / "src.mp4", "320x240", 3.0, rate=25)
    idx = resample_indices(75, 25.0, 30)  # 25 -> 30 fps: some source frames twice
    assert len(idx) == 90 and len(np.unique(idx)) == 75
    kw = {"width": size[0], "height": size[1]} if size else {}
    want = decord.VideoReader(str(video), ctx=decord.cpu(0), **kw).get_batch(list(idx)).asnumpy()
    chunks = list(iter_frames(video, idx, size, chunk=16))
    assert [len(c) for c in chunks] == [16] * 5 + [10]
    got = np.concatenate(chunks)
    assert got.shape == want.shape == (90, *((240, 320) if size is None else (120, 160)), 3)
    assert np.array_equal(got, want)
    sub = np.array([3, 3, 40, 41, 74])  # a selection, stopping before the end
    assert np.array_equal(np.concatenate(list(iter_frames(video, sub, size, chunk=2))),
                          np.concatenate(chunks)[[np.flatnonzero(idx == i)[0] for i in sub]])


def test_a_paused_consumer_holds_one_chunk_not_the_clip(tmp_path):
    """At 512 px a frame is 0.79 MB: the 290 frames after the first chunk would be 228 MB."""
    video = _testsrc(tmp_path / "long.mp4", "512x512", 12.0)
    frames = iter_frames(video, np.arange(300), chunk=10)
    first = next(frames)
    before = _rss_mb()
    time.sleep(1.5)  # a slow consumer: the decoder must wait, not run ahead
    grown = _rss_mb() - before
    rest = sum(len(c) for c in frames)
    assert first.shape == (10, 512, 512, 3) and rest == 290
    assert grown < 40, f"{grown:.0f} MB decoded ahead while the consumer paused"


def test_stopping_early_leaves_no_decoder_running(tmp_path):
    video = _testsrc(tmp_path / "src.mp4", "320x240", 4.0)
    before = _children()
    frames = iter_frames(video, np.arange(100), chunk=8)
    next(frames)
    assert len(_children() - before) == 1  # the ffmpeg decoding it
    frames.close()
    assert _children() - before == set()


def test_frames_past_the_end_and_bad_indices(tmp_path):
    video = _testsrc(tmp_path / "src.mp4", "320x240", 2.0)
    with pytest.raises(InputError, match="file truncated or corrupt .*stream ends at 50"):
        list(iter_frames(video, np.arange(40, 60), chunk=8))
    with pytest.raises(ValueError, match="non-decreasing"):
        list(iter_frames(video, np.array([5, 2]), chunk=8))
    assert list(iter_frames(video, np.array([], dtype=np.int64))) == []
