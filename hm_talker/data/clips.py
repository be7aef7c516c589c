"""A clip to evaluate (video, image or folder of images), read a fixed number of frames at a time.

Evaluation decodes every clip through :meth:`Clip.chunks`, so its memory holds one chunk of frames,
never the whole clip: peak memory does not grow with the clip's length.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from hm_talker.errors import InputError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
EVAL_FPS = 25  # videos are resampled to the evaluation protocol's 25 fps
CHUNK_FRAMES = 64  # default frames decoded and scored at once (64 x 512 x 512 x 3 bytes = 50 MB)


M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number for the mmap threshold
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default threshold, kept fixed (see bound_heap_growth)


def bound_heap_growth() -> None:
    """Keep glibc's mmap threshold fixed at its default, so that freed chunks go back to the system.

    glibc raises the threshold to the largest block freed so far (a chunk's float frames); from then
    on such blocks come from the heap, and the heap crept by about 2 MB a chunk of 64 frames at 64 px (200 MB
    over a 5 min clip) though nothing was kept. A no-op where the C library is not glibc.
    """
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        return


def read_image(path: Path) -> np.ndarray:
    """One image file -> [H, W, 3] uint8 RGB; one-line InputError when missing or unreadable."""
    from hm_talker.preprocess.shards import decode_image

    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        return decode_image(path.read_bytes())
    except ValueError:
        raise InputError(path, "unreadable image") from None


@dataclass
class Clip:
    """Frames of one clip: ``num_frames`` of ``height`` x ``width`` RGB (videos at 25 fps)."""

    path: Path
    num_frames: int
    height: int
    width: int
    files: list[Path] = field(default_factory=list)  # a folder's images, sorted by name
    indices: np.ndarray | None = None  # a video's source frame at each 25 fps instant

    @property
    def is_video(self) -> bool:
        return self.indices is not None

    def chunks(self, chunk: int = CHUNK_FRAMES, stop: int | None = None) -> Iterator[np.ndarray]:
        """Yield uint8 ``[n, H, W, 3]`` chunks of at most ``chunk`` frames, in order, up to ``stop``."""
        from hm_talker.preprocess.media import iter_frames

        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        if self.is_video:
            yield from iter_frames(self.path, self.indices[:stop], chunk=chunk)
        elif not self.files:
            yield read_image(self.path)[None]
        else:
            for i in range(0, stop, chunk):
                frames = [read_image(f) for f in self.files[i:min(stop, i + chunk)]]
                if any(f.shape != (self.height, self.width, 3) for f in frames):
                    raise InputError(self.path, "images in the folder differ in size")
                yield np.stack(frames)


def open_clip(path) -> Clip:
    """Probe a video, an image or a folder of images (sorted by name) without decoding all of it."""
    from hm_talker.preprocess.media import probe_video, resample_indices

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise InputError(path, "folder holds no image files")
        h, w = read_image(files[0]).shape[:2]
        return Clip(path, len(files), h, w, files=files)
    if path.suffix.lower() in IMAGE_EXTS:
        h, w = read_image(path).shape[:2]
        return Clip(path, 1, h, w)
    info = probe_video(path)
    idx = resample_indices(info.num_frames, info.fps, EVAL_FPS)
    return Clip(path, len(idx), info.height, info.width, indices=idx)


def load_frames(path) -> np.ndarray:
    """A video, an image or a folder of images -> [T, H, W, 3] uint8 RGB (the whole clip in memory:
    evaluation itself reads clips chunk by chunk through :func:`open_clip`)."""
    return np.concatenate(list(open_clip(path).chunks()))
