"""Every tunable of preprocessing, one field each (used as an OmegaConf structured config)."""
from dataclasses import dataclass, field


@dataclass
class PreprocessConfig:
    size: int = 512  # output frame side in pixels (square crop around the face)
    fps: int = 25  # output frame rate; sources of any rate are resampled to it
    sample_rate: int = 16000  # audio rate of all features
    analysis_size: int = 320  # long side of the frames the landmark pass decodes (speed vs small faces)
    max_faces: int = 3  # faces tracked per frame; the largest one is kept
    min_detection_confidence: float = 0.5  # mediapipe face detector threshold
    max_missing_fraction: float = 0.1  # error when more frames than this have no face
    max_gap_frames: int = 12  # error when a run of face-less frames is longer (interpolated otherwise)
    crop_scale: float = 2.2  # crop side = this x the median face-landmark box side
    crop_center_y: float = -0.05  # vertical shift of the crop centre, in crop sides (negative = up)
    crop_smooth_sigma: float = 4.0  # Gaussian smoothing of the crop centre over time, in frames
    crop_outside_warn: float = 0.05  # warn when more than this share of a frame's crop lies outside the video (its pixels repeat the edge: streaks)
    letterbox_level: int = 16  # a border row/column whose brightest pixel stays at or below this (0-255) in every analysed frame is a black bar (letterbox), not picture
    crop_inside: bool = False  # move each crop box inside the video's picture (off its black bars; shrunk to it if larger): no repeated edge pixels, the head off-centre near an edge
    pose_smooth_sigma: float = 1.0  # Gaussian smoothing of head rotation/translation, in frames
    focal_ratio: float = 2.0  # camera focal length in units of the output side (long focal ~ weak perspective)
    audio_features: str = "mel"  # mel | hubert | wav2vec2
    audio_model: str = ""  # local folder with HuBERT / wav2vec2 weights (transformers format)
    n_mels: int = 80  # mel bands of the default feature
    mel_hop: int = 160  # samples per mel row (10 ms at 16 kHz: 4 rows per 40 ms video frame)
    mel_win: int = 400  # mel analysis window in samples (25 ms)
    mel_fmin: float = 55.0  # lowest mel frequency (Hz)
    mel_fmax: float = 7600.0  # highest mel frequency (Hz)
    audio_rows_fps: int = 25  # feature rows per frame k = what one frame at this rate holds (mel 4), at any fps
    window_frames: int = 8  # audio window around a frame; clips shorter than this are rejected
    val_fraction: float = 0.0909090909  # held-out tail of the identity (1/11 as in the anchors)
    shard_frames: int = 200  # frames per shard at most
    shard_max_mb: float = 64.0  # shard size bound; fewer frames per shard when samples are big
    image_format: str = "jpg"  # jpg (compact) or png (lossless)
    jpeg_quality: int = 95  # JPEG quality of stored frames
    silence_dbfs: float = -55.0  # RMS level below which the sound is reported as silent
    clip_level: float = 0.999  # |sample| at or above this counts as clipped (full scale is 1.0)
    max_clipped_fraction: float = 0.01  # warn when more than this share of the sound's samples is clipped
    max_constant_fraction: float = 0.5  # warn when one non-zero value fills more than this share of the samples (stuck sound)
    length_tolerance_frames: int = 1  # audio/video length difference tolerated silently
    av_offset: str = "auto"  # sound vs mouth offset per clip: auto (measure it, shift the sound when clear), or frames to shift by (+k: the sound is k frames late; 0 = keep)
    av_offset_max_frames: int = 8  # auto: lags searched, +- this many frames (a peak at the edge is not applied)
    av_offset_min_seconds: float = 15.0  # auto: clips shorter than this are not measured (too few syllables for a clear peak)
    av_offset_min_gain: float = 0.1  # auto: shift only when the mouth/loudness r at the best lag beats the r at lag 0 by this
    au_neutral_percentile: float = 5.0  # percentile of each AU feature over the identity taken as its neutral (eyelid AUs: the median)
    openface_csv: str = ""  # OpenFace CSV whose AU*_r columns replace the geometric estimate
    decode_threads: int = 2  # decoder threads
    chunk_frames: int = 32  # frames decoded per batch (bounds memory: never the whole clip)
    au_units: dict = field(default_factory=dict)  # per-AU override of the geometry unit (see aus.py)
