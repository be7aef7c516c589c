"""Deformation field (face + inside-mouth branches), tri-plane hash encoding and audio condition."""

from hm_talker.model.audio_encoder import AudioEncoder
from hm_talker.model.config import (
    AudioEncoderConfig,
    DeformationConfig,
    FaceDeformationConfig,
    HashGridConfig,
    MouthDeformationConfig,
)
from hm_talker.model.deformation import DeformationOutput, FaceDeformation, MouthDeformation, apply_deformation
from hm_talker.model.hash_grid import HashGrid2D, TriPlaneHashEncoding

__all__ = [
    "AudioEncoder",
    "AudioEncoderConfig",
    "DeformationConfig",
    "DeformationOutput",
    "FaceDeformation",
    "FaceDeformationConfig",
    "HashGrid2D",
    "HashGridConfig",
    "MouthDeformation",
    "MouthDeformationConfig",
    "TriPlaneHashEncoding",
    "apply_deformation",
]
