"""Synthetic talking-head data: speech-like sound and a procedurally drawn face.

Why: the demo and the tests must work with nothing outside the repository, and
need ground truth (the mouth opening drawn at each frame) that real footage
cannot give. See :func:`make_synthetic_clip` and :func:`make_synthetic_speech`.
"""
from .clip import SyntheticClip, make_synthetic_clip, motion_tracks, render_frames
from .face import FaceRenderer
from .speech import frame_rms, make_synthetic_speech, mouth_envelope, synthesize_speech

__all__ = [
    "SyntheticClip",
    "make_synthetic_clip",
    "make_synthetic_speech",
    "synthesize_speech",
    "mouth_envelope",
    "frame_rms",
    "render_frames",
    "motion_tracks",
    "FaceRenderer",
]
