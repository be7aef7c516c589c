"""Structured configs of the networks: the Gaussians, the deformation field, the audio condition, CMMM, HMMM.

Plain dataclasses with plain-typed fields and defaults so that they can be embedded in
OmegaConf structured configs (``OmegaConf.structured(DeformationConfig)``). Every tunable
number used by ``hm_talker.model`` lives here; the modules read nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hm_talker.constants import EYE_BROW_AUS


@dataclass
class HashGridConfig:
    """One 2D multi-resolution hash grid (one plane of the tri-plane encoding)."""

    num_levels: int = 12  # L: number of resolution levels
    log2_table_size: int = 14  # T = 2**log2_table_size entries per level (hashed levels)
    features_per_level: int = 1  # F: feature channels stored per table entry
    base_resolution: int = 64  # cells per side on the coarsest level
    max_resolution: int = 512  # cells per side on the finest level (geometric growth between)
    init_range: float = 1.0e-4  # table entries start uniform in [-init_range, init_range]


@dataclass
class FaceDeformationConfig:
    """Face branch: Gaussian centre + motion condition + upper-face AUs -> xyz/rot/scale offsets."""

    grid: HashGridConfig = field(default_factory=HashGridConfig)  # per-plane hash grid
    condition_dim: int = 64  # C: motion condition (hybrid audio+AU feature; audio only in the baseline)
    upper_au_dim: int = 7  # Au: eye/brow AUs (AU01, AU02, AU04, AU05, AU06, AU07, AU45); 0 disables
    gate_hidden_dim: int = 32  # hidden width of the region-attention gate MLPs
    gate_num_layers: int = 2  # linear layers in each gate MLP (>= 1)
    mlp_width: int = 64  # hidden width of the offset MLP
    mlp_depth: int = 3  # hidden layers of the offset MLP (>= 1)
    xyz_offset_scale: float = 1.0  # multiplier on the xyz head output (scene units)
    rot_offset_scale: float = 1.0  # multiplier on the quaternion-delta head output
    scale_offset_scale: float = 1.0  # multiplier on the log-scale head output
    detach_points: bool = True  # no gradient from the encoding back to the canonical centres


@dataclass
class MouthDeformationConfig:
    """Inside-mouth branch: Gaussian centre + audio condition -> xyz offset (mostly vertical)."""

    grid: HashGridConfig = field(
        default_factory=lambda: HashGridConfig(num_levels=8, base_resolution=32, max_resolution=256)
    )  # per-plane hash grid (the mouth interior is small, so a coarser grid)
    audio_dim: int = 64  # C_a: audio condition dim
    gate_hidden_dim: int = 32  # hidden width of the region-attention gate MLP
    gate_num_layers: int = 2  # linear layers in the gate MLP (>= 1)
    mlp_width: int = 32  # hidden width of the offset MLP
    mlp_depth: int = 2  # hidden layers of the offset MLP (>= 1)
    vertical_axis: int = 1  # index of the face-frame "up" axis (jaw opening direction)
    vertical_offset_scale: float = 1.0  # multiplier on the vertical offset head
    lateral_offset_scale: float = 0.1  # multiplier on the two other axes: jaw motion is mostly vertical
    detach_points: bool = True  # no gradient from the encoding back to the canonical centres


@dataclass
class DeformationConfig:
    """Both deformation branches plus the box the tri-planes are normalised to."""

    face: FaceDeformationConfig = field(default_factory=FaceDeformationConfig)  # face branch
    mouth: MouthDeformationConfig = field(default_factory=MouthDeformationConfig)  # inside-mouth branch
    aabb_min: list[float] = field(default_factory=lambda: [-1.0, -1.0, -1.0])  # box min (x, y, z)
    aabb_max: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # box max (x, y, z)
    aabb_margin: float = 0.05  # relative padding when the box is fitted to a point cloud


@dataclass
class AudioEncoderConfig:
    """Audio-feature window [B, W, k, D] -> condition [B, C]."""

    feature_dim: int = 80  # D: per-row feature dim (80 log-mel bins; 768/1024 for HuBERT)
    rows_per_frame: int = 4  # k: audio-feature rows per video frame (4 for 100 Hz mel at 25 fps)
    window: int = 8  # W: video frames in the smoothing window
    input_layer_norm: bool = False  # LayerNorm per row; off by default: it removes loudness (mel mean), a mouth cue
    conv_channels: list[int] = field(default_factory=lambda: [256, 128])  # per-frame Conv1d widths
    conv_kernel: int = 3  # Conv1d kernel along the k rows (odd, same padding)
    fc_hidden_dim: int = 128  # hidden width of the per-frame head after the convs
    condition_dim: int = 64  # C: output condition dim
    leaky_relu_slope: float = 0.02  # negative slope of all LeakyReLUs
    use_attention: bool = True  # temporal attention over W; False -> take the centre frame
    attention_channels: list[int] = field(default_factory=lambda: [16, 8, 4, 2, 1])  # att conv widths (last must be 1)
    attention_kernel: int = 3  # Conv1d kernel along the window axis (odd, same padding)


@dataclass
class CMMMNetConfig:
    """CMMM's networks: audio window -> implicit feature (the AudioEncoder above) -> 17 AUs, and
    measured AUs -> explicit feature; plus the two embeddings of the audio/visual alignment loss."""

    hidden_dim: int = 128  # hidden width of the AU head and of the AU encoder
    au_head_layers: int = 2  # linear layers of the AU head (implicit feature -> 17 AUs)
    explicit_dim: int = 64  # E: explicit feature dim (AU encoder output; must equal the condition dim)
    au_encoder_layers: int = 2  # linear layers of the AU encoder (AUs -> explicit feature)
    embed_dim: int = 32  # dim of the alignment embeddings (audio window vs AU window)
    dropout: float = 0.1  # dropout in the AU head (the audio -> AU map over-fits one speaker easily)
    au_input: str = "speech"  # AU head input: speech (energy/flux window: transfers across speakers), mel (implicit feature) or both
    speech_window: int = 16  # frames of speech features the AU head reads (16 = 0.64 s; must equal data.speech_window)
    speech_rows: int = 4  # speech-feature rows per frame (10 ms mel rows; set from the identity's features)
    speech_dim: int = 2  # speech features per 10 ms row (log energy, spectral flux)
    speech_head: str = "frame"  # AU head on the speech window: linear (every 10 ms row), frame (each frame's rows averaged, then linear: fewer weights, transfers better), or conv (strided 1D convolutions over its rows, nonlinear)
    speech_channels: list[int] = field(default_factory=lambda: [16, 32, 32])  # conv head: channels of its layers (each halves the rows)
    speech_kernel: int = 5  # conv head: kernel size along the 10 ms rows
    calibrate: bool = True  # rescale predicted AUs: the speaker's prediction statistics -> the identity's measured ones
    formant_share: float = 0.5  # weight of the formant head in the AU prediction (z-units; 0 = the linear speech head alone, no formants read)
    formant_hidden: int = 32  # formant head: hidden width of each of its MLPs (two hidden layers, GELU)
    formant_heads: int = 3  # formant head: MLPs averaged (each from its own seed)
    formant_dropout: float = 0.2  # formant head: dropout on its input and first hidden layer
    formant_epochs: int = 15  # formant head: passes over the stage-1 training frames when it is fitted (after stage 1)
    formant_lr: float = 1.0e-3  # formant head: AdamW learning rate of that fit
    formant_weight_decay: float = 0.05  # formant head: AdamW weight decay of that fit
    formant_batch: int = 128  # formant head: frames per step of that fit


@dataclass
class FusionConfig:
    """HMMM's gated attention: implicit [B, C] + explicit [B, C] -> condition per Gaussian [B, N, C]."""

    gate: str = "gated"  # gated (learned gates mix the two features) or concat (a linear map of [implicit, explicit])
    gate_on: str = "gaussian"  # gates per Gaussian from its spatial feature (gaussian) or per frame from the features (token)
    gate_hidden_dim: int = 32  # hidden width of the gate MLP
    gate_init_bias: float = 0.0  # initial gate logit (0 -> gates start at 0.5)


@dataclass
class GaussianConfig:
    num_face: int = 2000  # face Gaussians at initialisation (sampled around the mean landmark shape)
    num_mouth: int = 300  # inside-mouth Gaussians at initialisation (behind the inner lips)
    sh_degree: int = 0  # spherical-harmonics degree of the colours (0 = view-independent)
    init_jitter: float = 0.03  # std of the isotropic jitter around landmarks (head units; eye distance = 1)
    init_scale: float = 0.0  # initial isotropic scale (head units); 0 = mean distance to the 3 nearest neighbours
    init_opacity: float = 0.5  # initial opacity of every Gaussian
    mouth_depth: float = 0.15  # how far behind (+z) the inner-lip landmarks the mouth Gaussians start
    mouth_spread: float = 0.12  # std of the mouth Gaussians around the inner-lip centre (head units)
    init_colors_from_frame: bool = True  # colour the face Gaussians from the first training frame


@dataclass
class HMMMConfig(FusionConfig):
    """HMMM (Hybrid Motion Modeling Module): which features drive the lower face, and how they fuse."""

    mode: str = "hybrid"  # hybrid (implicit + explicit), implicit (audio only: the baseline) or explicit (AUs only)
    explicit_aus: str = "all"  # AUs that feed the explicit feature: all 17, the lower-face ones, or jaw (AU25, AU26: the opening)
    upper_au_source: str = "frames"  # eye/brow AUs of the face branch: frames (measured on the rendered frame), predicted, or constant (the identity's mean: a diagnostic)


@dataclass
class ModelConfig:
    gaussians: GaussianConfig = field(default_factory=GaussianConfig)  # canonical Gaussians
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)  # audio window -> condition
    deformation: DeformationConfig = field(default_factory=DeformationConfig)  # face + mouth branches
    upper_aus: list[str] = field(default_factory=lambda: list(EYE_BROW_AUS))  # AUs fed to the face branch for eyes and brows (not AU06 / AU09: they move with the jaw)
    upper_au_reach: float = 0.5  # eye/brow AUs move only face Gaussians above this point from the eye line (0) to the nose tip (1): never the lips or jaw
    upper_au_edge: float = 0.05  # width of that boundary's soft edge (head units; eye distance 1)
    render_backend: str = "auto"  # rasteriser: auto (gsplat on CUDA, else torch), torch or gsplat
    tile_size: int = 16  # rasteriser tile edge in pixels
    face_region: str = "pose"  # where the head is rendered (the real frame outside): pose (the identity's face outline under the frame's head pose: no real mouth shapes it) or frame (the frame's own face mask)
    face_region_chin: float = 0.25  # pose region: the outline below the nose tip stretched down by this share (room for the open jaw); fit replaces it by the measured room unless face_region_chin_measure is false
    face_region_chin_measure: bool = True  # fit: set face_region_chin from the identity's training frames (the 99th percentile of the chin's drop below the mean shape, plus face_region_chin_margin): no room past the widest jaw, over the neck and collar
    face_region_chin_margin: float = 0.05  # room past the measured jaw (a driven jaw may open a little further than a training frame's)
    silence_audio: bool = False  # a deaf control: every audio input at its mean (no information), in training and driving
