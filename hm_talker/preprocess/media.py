"""Reading video and sound: probing, frame-rate resampling, chunked decoding, 16 kHz mono audio."""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from hm_talker.errors import InputError


@dataclass
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    num_frames: int
    has_audio: bool

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


def _ffprobe_streams(path: Path) -> list[dict]:
    if shutil.which("ffprobe") is None:
        raise InputError(None, "ffprobe not found: install ffmpeg (see README)")
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type",
                          "-of", "json", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        raise InputError(path, "unreadable or truncated media file "
                               f"({(out.stderr.strip().splitlines() or ['ffprobe failed'])[-1]})")
    return json.loads(out.stdout or "{}").get("streams", [])


def probe_video(path) -> VideoInfo:
    """Check that `path` is a readable video and return its geometry, rate and length."""
    import decord

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    kinds = [s.get("codec_type") for s in _ffprobe_streams(path)]
    if "video" not in kinds:
        raise InputError(path, "no video stream")
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        n, fps = len(vr), float(vr.get_avg_fps())
        h, w = vr[0].shape[:2]
    except Exception as exc:  # decord raises its own error types for broken streams
        raise InputError(path, f"unreadable or truncated video ({type(exc).__name__})") from None
    if n == 0 or not fps > 0:
        raise InputError(path, "video stream has no frames")
    return VideoInfo(path, int(w), int(h), fps, int(n), "audio" in kinds)


def resample_indices(num_src: int, src_fps: float, fps: int) -> np.ndarray:
    """Source frame shown at each output instant k/fps (nearest in time, never past the end).

    The output has round(duration * fps) frames, so 30 fps and 22.13 fps sources keep their length.
    """
    n_out = int(round(num_src * fps / src_fps))
    t = np.arange(n_out) / fps
    return np.minimum(np.floor(t * src_fps + 1e-6).astype(np.int64), num_src - 1)


def scaled_size(w: int, h: int, long_side: int) -> tuple[int, int]:
    """(width, height) with the long side at most `long_side`, both even (decoders like even)."""
    s = min(1.0, long_side / max(w, h))
    return max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2)


def iter_frames(path, indices: np.ndarray, size: tuple[int, int] | None = None,
                chunk: int = 32, threads: int = 2) -> Iterator[np.ndarray]:
    """Yield RGB uint8 chunks [n, H, W, 3] of the given source frames, decoded `chunk` at a time."""
    import decord

    kw = {"width": size[0], "height": size[1]} if size else {}
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads, **kw)
        for i in range(0, len(indices), chunk):
            yield vr.get_batch(list(indices[i:i + chunk])).asnumpy()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"decoding failed, file truncated or corrupt ({type(exc).__name__})") from None


def load_audio(path, sample_rate: int) -> np.ndarray:
    """Any file librosa reads -> float32 mono at `sample_rate`."""
    import librosa

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        y, _ = librosa.load(str(path), sr=sample_rate, mono=True)
    except Exception as exc:
        if "not finite" in str(exc):  # librosa's check of the decoded samples
            raise InputError(path, "sound has non-finite samples (NaN or inf)") from None
        raise InputError(path, f"unreadable audio ({type(exc).__name__})") from None
    if y.size == 0:
        raise InputError(path, "audio has no samples")
    return y.astype(np.float32)


def audio_from_video(path, sample_rate: int) -> np.ndarray:
    """The video's sound track as float32 mono at `sample_rate` (ffmpeg does the resampling)."""
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-vn", "-ac", "1",
           "-ar", str(sample_rate), "-f", "f32le", "-"]
    out = subprocess.run(cmd, capture_output=True)
    if out.returncode != 0:
        raise InputError(path, "could not decode the sound track")
    y = np.frombuffer(out.stdout, dtype=np.float32).copy()
    if y.size == 0:
        raise InputError(path, "sound track is empty")
    return y


def rms_dbfs(y: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(y, dtype=np.float64))) + 1e-12))


def prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run `it` in a background thread, `depth` items ahead: decoding (which releases the GIL)
    overlaps with the landmark model or the encoders on the other core."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in it:
                if stop.is_set():
                    return
                q.put((True, item))
            q.put((True, done))
        except BaseException as exc:  # handed to the consumer, raised there
            q.put((False, exc))

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.01)
