"""Streaming RGB frames (plus an optional sound track) into an h264/AAC mp4 through ffmpeg.

The file appears at its path only when the writer closes cleanly; an error or an interruption
leaves no partial video behind. Work files live in `.NAME.partial-PID` next to the output; one
left by a process that was killed outright (SIGKILL) is removed by the next writer of that path.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from hm_talker.child_signals import requeue_signal_blocked


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(path: Path) -> None:
    """Delete `.NAME.partial-PID` work folders of `path` whose process no longer runs."""
    for d in path.parent.glob(f".{path.name}.partial-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


class VideoWriter:
    def __init__(self, path, width: int, height: int, fps: int, audio: np.ndarray | None = None,
                 sample_rate: int = 16000, crf: int = 18):
        import soundfile as sf

        from hm_talker.preprocess.media import require_ffmpeg

        require_ffmpeg()

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.path)
        self._tmp = self.path.parent / f".{self.path.name}.partial-{os.getpid()}"
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir()
        self._mp4 = self._tmp / "video.mp4"
        cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]
        if audio is not None:
            sf.write(self._tmp / "sound.wav", audio, sample_rate)
            cmd += ["-i", str(self._tmp / "sound.wav"), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "128k"]
        # h264 in yuv420p needs even sides: pad odd ones by a pixel
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf),
                "-vf", f"pad={width + width % 2}:{height + height % 2}", str(self._mp4)]
        with requeue_signal_blocked():  # SLURM's requeue signal reaches children too: ffmpeg must outlive it
            self._ff = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frames: np.ndarray) -> None:  # [n, H, W, 3] or [H, W, 3] uint8 RGB
        try:
            self._ff.stdin.write(np.ascontiguousarray(frames, dtype=np.uint8).tobytes())
        except BrokenPipeError:  # ffmpeg stopped (a full disk, say): its own message says why
            self._ff.wait()
            raise self._failure() from None

    def _failure(self):
        from hm_talker.errors import InputError

        err = self._ff.stderr.read().decode(errors="replace").strip().splitlines()
        return InputError(self.path, f"ffmpeg failed writing the video ({err[-1] if err else 'no message'})")

    def close(self) -> Path:
        try:
            self._ff.stdin.close()
            if self._ff.wait() != 0:
                raise self._failure()
            os.replace(self._mp4, self.path)
        finally:
            self._cleanup()
        return self.path

    def abort(self) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        if self._ff.poll() is None:
            self._ff.kill()
            self._ff.wait()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.abort()
