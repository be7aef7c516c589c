"""Reading video and sound: probing, frame-rate resampling, chunked decoding, 16 kHz mono audio."""
from __future__ import annotations

import functools
import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from hm_talker.child_signals import requeue_signal_blocked, run_child
from hm_talker.errors import InputError

log = logging.getLogger("hm_talker")


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


def require_ffmpeg(*tools: str, why: str = "") -> None:
    """One line when a tool of ffmpeg's is not on PATH (default: ffmpeg): every clip reader and video writer
    needs it, and without this check a missing binary reads as a missing file."""
    missing = [t for t in (tools or ("ffmpeg",)) if shutil.which(t) is None]
    if missing:
        raise InputError(None, f"{' and '.join(missing)} not found{why}: install ffmpeg (see README)")


def _ffprobe_streams(path: Path, entries: str = "codec_type", select: list[str] = ()) -> list[dict]:
    """ffprobe's `entries` of the file's streams (`select`: e.g. ["-select_streams", "v:0"])."""
    require_ffmpeg("ffprobe")
    out = run_child(["ffprobe", "-v", "error", *select, "-show_entries", f"stream={entries}",
                     "-of", "json", str(path)], text=True)
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


def _frame_size(path: Path) -> tuple[int, int]:
    """(width, height) of the first video stream, as it is stored (no rotation applied)."""
    try:
        stream = _ffprobe_streams(path, "width,height", ["-select_streams", "v:0"])[0]
        return int(stream["width"]), int(stream["height"])
    except (ValueError, IndexError, KeyError, TypeError):
        raise InputError(path, "no readable video stream") from None


def iter_frames(path, indices: np.ndarray, size: tuple[int, int] | None = None,
                chunk: int = 32, threads: int = 2) -> Iterator[np.ndarray]:
    """Yield RGB uint8 chunks [n, H, W, 3] of the given source frames (non-decreasing indices; a
    repeated index repeats its frame), decoded `chunk` at a time; `size` = (width, height) to scale to.

    The frames come from an ffmpeg process through a pipe, every decoded frame once, in stream order
    (the pixels decord gives: same swscale conversion, bilinear when scaling), and ffmpeg waits while
    a chunk is being used, so memory holds a chunk whatever the clip's length or the consumer's speed.
    decord's reader, used here before, kept decoding ahead in a background thread without a bound
    while the caller worked: a 71 s pair at 512 px held ~2.4 GB of frames during scoring."""
    path = Path(path)
    indices = np.asarray(indices, dtype=np.int64)
    if not len(indices):
        return
    if np.any(np.diff(indices) < 0) or indices[0] < 0:
        raise ValueError("iter_frames reads frames in stream order: indices must be non-decreasing")
    require_ffmpeg()
    w, h = size if size else _frame_size(path)
    vf = ["-vf", f"scale={w}:{h}:flags=bilinear"] if size else []
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-threads", str(threads), "-noautorotate", "-i", str(path),
           "-map", "0:v:0", *vf, _passthrough_option(), "passthrough", "-frames:v", str(int(indices[-1]) + 1),
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    with requeue_signal_blocked():  # a fit's reader must outlive SLURM's requeue signal (hm_talker/child_signals.py)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    frame = np.empty((h, w, 3), np.uint8)
    view = memoryview(frame).cast("B")
    try:
        src, k = -1, 0  # the source frame in `frame`, the next index to yield
        while k < len(indices):
            out = np.empty((min(chunk, len(indices) - k), h, w, 3), np.uint8)
            for j in range(len(out)):
                while src < indices[k + j]:
                    if not _read_into(proc.stdout, view):
                        raise InputError(path, "decoding failed, file truncated or corrupt "
                                               f"(no frame {int(indices[k + j])}: the stream ends at {src + 1})")
                    src += 1
                out[j] = frame
            k += len(out)
            yield out
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.wait()
        proc.stderr.close()


@functools.lru_cache(maxsize=1)
def _passthrough_option() -> str:
    """ffmpeg's option for "every decoded frame once, no frames dropped or duplicated": `-fps_mode` since
    ffmpeg 5.1, `-vsync` before it (Ubuntu 22.04 ships 4.4)."""
    probe = run_child(["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "nullsrc=s=16x16:d=0.04",
                       "-fps_mode", "passthrough", "-f", "null", "-"])
    return "-fps_mode" if probe.returncode == 0 else "-vsync"


def _read_into(stream, view: memoryview) -> bool:
    """Fill `view` from `stream`; False when the stream ends first."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            return False
        got += n
    return True


def load_audio(path, sample_rate: int, cfg=None) -> np.ndarray:
    """A sound file (anything soundfile or ffmpeg reads) -> float32 mono at `sample_rate`.

    Decoded in float at the file's own rate and channels, checked (`check_sound`: finite, else an
    InputError; constant or clipped: a warning), then mixed to mono and resampled as librosa.load
    does (soxr_hq). Files soundfile cannot open (.mov, .m4a, .mp3, ...) are decoded by ffmpeg as
    32-bit float, never through an integer format: librosa's audioread fallback decodes to 16-bit
    PCM, where NaN samples became full-scale -1.0 and passed every check. `cfg`: a
    PreprocessConfig for the limits of `check_sound` (its defaults when None)."""
    import librosa

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    y, sr = _decode_native(path)
    if y.size == 0:
        raise InputError(path, "audio has no samples")
    check_sound(y, path, cfg)
    y = librosa.resample(librosa.to_mono(y), orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32)


def _decode_native(path: Path) -> tuple[np.ndarray, int]:
    """Float32 samples ([S] or [channels, S], as librosa.load reads them) and their rate."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            return f.read(dtype="float32", always_2d=False).T, int(f.samplerate)
    except sf.SoundFileRuntimeError:
        pass  # not a format libsndfile reads: ffmpeg below
    except Exception as exc:  # a malformed file soundfile recognised
        raise InputError(path, f"unreadable audio ({type(exc).__name__})") from None
    return _decode_ffmpeg(path)


def _decode_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """The first sound stream of any media file via ffmpeg, as 32-bit float at its own rate."""
    require_ffmpeg("ffprobe", "ffmpeg")
    probe = run_child(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                       "stream=sample_rate,channels", "-of", "json", str(path)], text=True)
    try:
        stream = json.loads(probe.stdout or "{}").get("streams", [])[0]
        sr, channels = int(stream["sample_rate"]), int(stream["channels"])
    except (ValueError, IndexError, KeyError, TypeError):
        what = "no sound stream" if probe.returncode == 0 else "not a media file"
        raise InputError(path, f"unreadable audio ({what})") from None
    if sr <= 0 or channels <= 0:
        raise InputError(path, "unreadable audio (no sample rate or channels)")
    out = run_child(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0", "-vn",
                     "-ac", str(channels), "-f", "f32le", "-"])
    if out.returncode != 0:
        raise InputError(path, "unreadable audio (ffmpeg could not decode it)")
    y = np.frombuffer(out.stdout, dtype=np.float32)
    y = y[: len(y) // channels * channels].reshape(-1, channels).T
    return (y[0] if channels == 1 else y).copy(), sr


def audio_from_video(path, sample_rate: int, cfg=None) -> np.ndarray:
    """The video's sound track as float32 mono at `sample_rate` (ffmpeg does the resampling, in
    float: NaN samples stay NaN), checked by `check_sound` (`cfg` as for `load_audio`)."""
    require_ffmpeg()
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-vn", "-ac", "1",
           "-ar", str(sample_rate), "-f", "f32le", "-"]
    out = run_child(cmd)
    if out.returncode != 0:
        raise InputError(path, "could not decode the sound track")
    y = np.frombuffer(out.stdout, dtype=np.float32).copy()
    if y.size == 0:
        raise InputError(path, "sound track is empty")
    check_sound(y, path, cfg)
    return y


def check_sound(y: np.ndarray, where, cfg=None) -> None:
    """Every decoded sound, whichever decoder read it: non-finite samples are an InputError naming
    `where`; a sound stuck at one value, or clipped, over the shares `cfg` allows is a warning."""
    if cfg is None:
        from hm_talker.preprocess.config import PreprocessConfig

        cfg = PreprocessConfig()
    bad = int(y.size - np.count_nonzero(np.isfinite(y)))
    if bad:  # NaN / inf samples would poison every feature (and are no speech)
        raise InputError(where, f"sound has {bad} non-finite samples (NaN or inf)")
    clipped = float(np.count_nonzero(np.abs(y) >= cfg.clip_level)) / y.size
    if clipped > cfg.max_clipped_fraction:
        log.warning("%s: %.1f %% of the sound's samples are clipped (|x| >= %g; more than %g %% is "
                    "distorted speech)", where, 100 * clipped, cfg.clip_level, 100 * cfg.max_clipped_fraction)
    value, share = _most_common_nonzero(y)
    if share > cfg.max_constant_fraction:
        log.warning("%s: the sound holds one value (%.4g) in %.1f %% of its samples (more than %g %% is "
                    "a stuck or broken sound, not speech)", where, value, 100 * share,
                    100 * cfg.max_constant_fraction)


def _most_common_nonzero(y: np.ndarray) -> tuple[float, float]:
    """(value, share of all samples) of the most frequent non-zero sample value; exact zeros are
    digital silence, which the silence check reports."""
    nz = y[y != 0].ravel()
    if not nz.size:
        return 0.0, 0.0
    values, counts = np.unique(nz, return_counts=True)
    i = int(np.argmax(counts))
    return float(values[i]), float(counts[i]) / y.size


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
