"""478-point face landmarks from mediapipe's face mesh, which ships its models inside the wheel."""
from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging: warnings and errors only


class FaceMeshTracker:
    """Track one face (the largest, then the one that overlaps the last kept face) through a video.

    `__call__(frame)` returns [478, 3] float32 points in pixels of `frame`
    (x right, y down, z towards the back of the head in the same pixel scale as x), or None.
    """

    def __init__(self, max_faces: int = 3, min_detection_confidence: float = 0.5,
                 static: bool = False):
        import mediapipe as mp

        with _quiet_native_stderr():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static, max_num_faces=max_faces, refine_landmarks=True,
                min_detection_confidence=min_detection_confidence, min_tracking_confidence=0.5)
        self._last_box = None
        self._warm = False

    def close(self):
        self._mesh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:  # frame: [H, W, 3] uint8 RGB
        h, w = frame.shape[:2]
        if not self._warm:  # the first call prints TFLite start-up chatter from C++
            with _quiet_native_stderr():
                res = self._mesh.process(np.ascontiguousarray(frame))
            self._warm = True
        else:
            res = self._mesh.process(np.ascontiguousarray(frame))
        if not res.multi_face_landmarks:
            return None
        faces = []
        for f in res.multi_face_landmarks:
            p = np.array([(q.x, q.y, q.z) for q in f.landmark], dtype=np.float32)
            faces.append(p * np.array([w, h, w], dtype=np.float32))
        boxes = [_box(p) for p in faces]
        if self._last_box is not None and len(faces) > 1:
            ious = [_iou(b, self._last_box) for b in boxes]
            best = int(np.argmax(ious)) if max(ious) > 0.3 else int(np.argmax([_area(b) for b in boxes]))
        else:
            best = int(np.argmax([_area(b) for b in boxes]))
        self._last_box = boxes[best]
        return faces[best]


def detect_landmarks(frames, static: bool = False) -> np.ndarray:
    """[T, H, W, 3] uint8 RGB frames -> [T, 478, 3] pixel landmarks, NaN where no face was found."""
    with LandmarkTrack(static=static) as track:
        track.update(frames)
        return track.landmarks()


class LandmarkTrack:
    """:func:`detect_landmarks` of one clip fed in consecutive chunks ``[n, H, W, 3]`` uint8 RGB.

    Keeps only the landmarks (478 x 3 floats a frame), never the frames.
    """

    def __init__(self, static: bool = False):
        self._tracker = FaceMeshTracker(static=static)
        self._rows: list[np.ndarray] = []

    def update(self, frames) -> None:
        for frame in frames:
            p = self._tracker(frame)
            self._rows.append(np.full((478, 3), np.nan, dtype=np.float32) if p is None else p)

    def landmarks(self) -> np.ndarray:
        """``[T, 478, 3]`` pixel landmarks of the frames so far, NaN where no face was found."""
        return np.stack(self._rows) if self._rows else np.full((0, 478, 3), np.nan, dtype=np.float32)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._tracker.close()


def _box(p):
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()])


def _area(b):
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _iou(a, b):
    inter = _area(np.array([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])]))
    return inter / max(_area(a) + _area(b) - inter, 1e-9)


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence what native code writes to fd 2 (mediapipe's start-up logging), keep Python's."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (captured): nothing to silence
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)
