"""Synthetic talking-head clips: speech-like sound + a face whose mouth follows it.

Why: the built-in demo and the self-contained tests need a real mp4 (h264
video, AAC sound) with a known ground truth: ``mouth_open[t]`` is exactly the
opening that was drawn at frame t and is derived from the sound's loudness,
so lip-sync code can be checked against it. The face is drawn so that
mediapipe's face detector and face mesh track it (see ``face.py``).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..child_signals import requeue_signal_blocked
from .face import FaceRenderer
from .speech import make_synthetic_speech, mouth_envelope

_APPEARANCE, _MOTION = 1, 2  # seed-stream tags, so sound, look and motion vary independently


@dataclass
class SyntheticClip:
    """What was written and the ground truth it was drawn from.

    ``mouth_open`` [T] in [0,1] is the opening drawn at each frame; ``audio``
    [S] float32 mono is the sound muxed into the file (before AAC coding).
    ``eye_closure`` [T] and ``head_pose`` [T, 4] (dx px, dy px, roll deg,
    scale) are the other per-frame drawing inputs, handy for checking trackers.
    """

    path: Path
    fps: float
    num_frames: int
    sample_rate: int
    mouth_open: np.ndarray = field(repr=False)
    audio: np.ndarray = field(repr=False)
    size: int = 256
    seed: int = 0
    eye_closure: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    head_pose: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32), repr=False)

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps


def _smooth_noise(t: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Sum of three slow sinusoids (0.1-0.7 Hz), roughly within +-amplitude: idle sway, no jerks."""
    out = np.zeros_like(t)
    for _ in range(3):
        out += np.sin(2 * np.pi * rng.uniform(0.1, 0.7) * t + rng.uniform(0, 2 * np.pi))
    return amplitude * out / 2.0


def motion_tracks(num_frames: int, fps: float, size: int, seed: int = 0, head_motion: float = 1.0):
    """Per-frame eye closure [T], head pose [T, 4] and gaze [T, 2] for a seed.

    Head motion is a few pixels of translation (~1.2% of the frame), up to
    ~2.5 degrees roll and ~2% scale, times ``head_motion`` (0: a still head at
    the frame centre). Blinks come every 2-5 s and last ~0.2 s, as in natural
    footage; they are defined in seconds so any fps agrees.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _MOTION]))
    t = np.arange(num_frames) / fps
    pose = np.stack(
        [
            _smooth_noise(t, rng, 0.012 * size),
            _smooth_noise(t, rng, 0.010 * size),
            _smooth_noise(t, rng, 2.5),
            1.0 + _smooth_noise(t, rng, 0.02),
        ],
        1,
    ).astype(np.float32)
    pose[:, :3] *= head_motion
    pose[:, 3] = 1.0 + (pose[:, 3] - 1.0) * head_motion
    closure = np.zeros(num_frames, np.float32)
    blink_t = rng.uniform(0.5, 2.5)
    while blink_t < num_frames / fps:
        u = (t - blink_t) / 0.2
        closure = np.maximum(closure, np.where((u > 0) & (u < 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 0.7, 0.0))
        blink_t += rng.uniform(2.0, 5.0)
    gaze = np.stack([_smooth_noise(t, rng, 0.6), _smooth_noise(t, rng, 0.4)], 1).astype(np.float32)
    return closure.astype(np.float32), pose, gaze


def render_frames(mouth_open: np.ndarray, fps: float = 25.0, size: int = 256, seed: int = 0,
                  head_motion: float = 1.0) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames (size, size, 3) with the given per-frame mouth opening.

    Kept separate from encoding so callers (and speed checks) can use frames in
    memory without ffmpeg.
    """
    renderer = FaceRenderer(size, np.random.default_rng(np.random.SeedSequence([int(seed), _APPEARANCE])))
    closure, pose, gaze = motion_tracks(len(mouth_open), fps, size, seed, head_motion)
    for i in range(len(mouth_open)):
        yield renderer.render(float(mouth_open[i]), float(closure[i]), tuple(pose[i]), tuple(gaze[i]))


def make_synthetic_clip(
    out_path: str | Path,
    seconds: float = 6.0,
    fps: float = 25,
    size: int = 256,
    sample_rate: int = 16000,
    seed: int = 0,
    mouth_lead_frames: int = 0,
    crf: int = 18,
    ffmpeg: str = "ffmpeg",
    speech: np.ndarray | None = None,
    head_motion: float = 1.0,
) -> SyntheticClip:
    """Write an mp4 (h264 yuv420p + AAC) of a synthetic face talking, return its ground truth.

    ``mouth_open`` is the smoothed, normalised per-frame loudness of the sound
    (see :func:`mouth_envelope`); ``mouth_lead_frames`` makes the mouth move
    that many frames before the sound (real speakers lead by ~0-100 ms), 0 by
    default so mouth and sound are exactly aligned; ``head_motion`` scales the
    head's sway (0: still). ``speech`` (mono float at
    ``sample_rate``) makes the same face say that sound instead of its own
    (``seconds`` is then the sound's length, the last partial frame included):
    a reference mouth for any synthetic driving speech. Frames are piped to ffmpeg
    as raw RGB while the next one is drawn, so drawing and encoding overlap.
    """
    if seconds <= 0 or fps <= 0:
        raise ValueError("seconds and fps must be positive")
    if size < 64 or size % 2:
        raise ValueError("size must be an even number of pixels >= 64 (yuv420p needs even sizes)")
    exe = shutil.which(ffmpeg)
    if exe is None:
        raise RuntimeError(f"'{ffmpeg}' not found on PATH; install ffmpeg to write synthetic clips")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if speech is not None:
        speech = np.asarray(speech, dtype=np.float32)
        num_frames = max(1, int(np.ceil(len(speech) * fps / sample_rate - 1e-9)))
    else:
        num_frames = max(1, int(round(seconds * fps)))
    num_samples = int(round(num_frames * sample_rate / fps))

    with tempfile.TemporaryDirectory(prefix="hm_synth_") as tmp:
        wav = Path(tmp) / "speech.wav"
        if speech is None:
            audio = make_synthetic_speech(wav, num_samples / sample_rate, sample_rate, seed)[:num_samples]
        else:
            import soundfile as sf

            audio = np.pad(speech, (0, max(0, num_samples - len(speech))))[:num_samples]
            sf.write(str(wav), audio, sample_rate, subtype="PCM_16")
        mouth = mouth_envelope(audio, sample_rate, fps, num_frames, lead_frames=mouth_lead_frames)
        cmd = [
            exe, "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}", "-framerate", str(fps), "-i", "-",
            "-i", str(wav),
            "-map", "0:v:0", "-map", "1:a:0",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart",
            str(out_path),
        ]
        log = Path(tmp) / "ffmpeg.log"
        with open(log, "wb") as err:  # a file, not a pipe: a chatty ffmpeg cannot block us
            with requeue_signal_blocked():  # a SLURM requeue signal must not kill the encoder (child_signals.py)
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            try:
                for frame in render_frames(mouth, fps, size, seed, head_motion):
                    proc.stdin.write(frame.tobytes())
                proc.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg exited early; its own message is reported below
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            code = proc.wait()
        if code != 0:
            raise RuntimeError(f"ffmpeg failed writing {out_path}: {log.read_text(errors='replace').strip()}")

    closure, pose, _ = motion_tracks(num_frames, fps, size, seed, head_motion)
    return SyntheticClip(
        path=out_path, fps=float(fps), num_frames=num_frames, sample_rate=sample_rate,
        mouth_open=mouth, audio=audio, size=size, seed=seed, eye_closure=closure, head_pose=pose,
    )
