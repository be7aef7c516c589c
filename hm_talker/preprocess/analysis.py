"""Pass 1 of preprocessing: per-clip sound and landmarks, validated, with no output written."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hm_talker.errors import InputError
from hm_talker.preprocess.audio_features import frame_start, frames_in
from hm_talker.preprocess.config import PreprocessConfig
from hm_talker.preprocess.landmarks import FaceMeshTracker
from hm_talker.preprocess.media import (VideoInfo, audio_from_video, iter_frames, load_audio,
                                        prefetch, probe_video, resample_indices, rms_dbfs, scaled_size)
from hm_talker.preprocess.track import interpolate_gaps, missing_runs, picture_region

log = logging.getLogger("hm_talker")


@dataclass
class ClipAnalysis:
    info: VideoInfo
    src_indices: np.ndarray  # [T] source frame of each output frame
    audio: np.ndarray  # [frame_start(T)] float32 mono at cfg.sample_rate (audio_features.frame_start)
    landmarks: np.ndarray  # [T, 478, 3] source pixels, gaps interpolated
    missing: int  # frames whose face was interpolated
    audio_source: str
    trimmed_frames: int  # video frames dropped because the sound was shorter
    picture: tuple[float, float, float, float]  # x0, y0, x1, y1 (source pixels): the frame less its black bars


def check_media(video: Path, audio_path: Path | None, cfg: PreprocessConfig):
    """Fast checks before any decoding of frames: readable video, sound present, lengths agree."""
    info = probe_video(video)
    if audio_path is not None:
        audio = load_audio(audio_path, cfg.sample_rate, cfg)
        audio_src = str(audio_path)
    elif not info.has_audio:
        raise InputError(video, "no sound track (pass --audio WAV to give the speech separately)")
    else:
        audio, audio_src = audio_from_video(video, cfg.sample_rate, cfg), "track"
    where = audio_path or video
    if not np.isfinite(audio).all():  # NaN / inf samples would poison every feature downstream
        raise InputError(where, f"sound has {int((~np.isfinite(audio)).sum())} non-finite samples (NaN or inf)")
    idx = resample_indices(info.num_frames, info.fps, cfg.fps)
    audio_frames = frames_in(len(audio), cfg.sample_rate, cfg.fps)  # a last partial frame counts when over half
    trimmed = 0
    if abs(audio_frames - len(idx)) > cfg.length_tolerance_frames:
        n = min(audio_frames, len(idx))
        log.warning("%s: audio is %.2f s and video %.2f s long: trimming both to %.2f s", where,
                    len(audio) / cfg.sample_rate, len(idx) / cfg.fps, n / cfg.fps)
        trimmed = len(idx) - n if len(idx) > n else 0
        idx = idx[:n]
    if len(idx) < cfg.window_frames:
        raise InputError(video, f"clip too short: {len(idx)} frames at {cfg.fps} fps, shorter than "
                                f"one audio window ({cfg.window_frames} frames)")
    n_samples = frame_start(len(idx), cfg.sample_rate, cfg.fps)  # exact at any fps (30: 533.3 a frame)
    audio = np.pad(audio, (0, max(0, n_samples - len(audio))))[:n_samples]
    if rms_dbfs(audio) < cfg.silence_dbfs:
        log.warning("%s: the sound is silent (%.0f dBFS): lip motion cannot be learned from it",
                    where, rms_dbfs(audio))
    return info, idx, audio, audio_src, trimmed


def analyse_clip(video: Path, audio_path: Path | None, cfg: PreprocessConfig) -> ClipAnalysis:
    info, idx, audio, audio_src, trimmed = check_media(video, audio_path, cfg)
    lms = np.full((len(idx), 478, 3), np.nan, dtype=np.float32)
    size = scaled_size(info.width, info.height, cfg.analysis_size)
    sx, sy = info.width / size[0], info.height / size[1]
    to_source = np.array([sx, sy, sx], dtype=np.float32)  # back to source pixels (z scales like x)
    row_max = np.zeros(size[1], np.uint8)  # brightest pixel of each row / column over every frame: black bars
    col_max = np.zeros(size[0], np.uint8)
    bar = tqdm(total=len(idx), desc=f"landmarks {video.name}", unit="frame", leave=False)
    with FaceMeshTracker(cfg.max_faces, cfg.min_detection_confidence) as tracker:
        i = 0
        for chunk in prefetch(iter_frames(video, idx, size, cfg.chunk_frames, cfg.decode_threads)):
            np.maximum(row_max, chunk.max(axis=(0, 2, 3)), out=row_max)
            np.maximum(col_max, chunk.max(axis=(0, 1, 3)), out=col_max)
            for frame in chunk:
                p = tracker(frame)
                if p is not None:
                    lms[i] = p * to_source
                i += 1
            bar.update(len(chunk))
    bar.close()
    missing = np.isnan(lms[:, 0, 0])
    n_miss = int(missing.sum())
    if n_miss == len(idx):
        raise InputError(video, "no face found in any frame")
    longest = max((n for _, n in missing_runs(missing)), default=0)
    if n_miss > cfg.max_missing_fraction * len(idx) or longest > cfg.max_gap_frames:
        raise InputError(video, f"no face in {n_miss} of {len(idx)} frames (longest gap {longest}; "
                                f"limits {cfg.max_missing_fraction:.0%} and {cfg.max_gap_frames} frames)")
    if n_miss:
        log.warning("%s: no face in %d frames: interpolated from their neighbours", video, n_miss)
    picture = picture_region(row_max, col_max, cfg.letterbox_level, info.width, info.height)
    return ClipAnalysis(info, idx, audio, interpolate_gaps(lms), n_miss, audio_src, trimmed, picture)
