"""Frames without a face: short gaps are interpolated and counted, too many are an error."""
from __future__ import annotations

import logging
import subprocess

import numpy as np
import pytest
import soundfile as sf

from hm_talker.errors import InputError
from hm_talker.preprocess.config import PreprocessConfig
from hm_talker.preprocess.pipeline import preprocess


def _clip_with_blank_frames(path, synthetic_clip, blank: range):
    """The synthetic talker with the frames in `blank` replaced by an empty grey frame."""
    from hm_talker.data.clips import load_frames

    frames = load_frames(synthetic_clip.path)
    frames[list(blank)] = 128
    wav = path.with_suffix(".wav")
    sf.write(wav, synthetic_clip.audio, synthetic_clip.sample_rate)
    h, w = frames.shape[1:3]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                    "-r", "25", "-i", "-", "-i", str(wav), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", str(path)], input=frames.tobytes(), check=True)
    return path


def test_short_gap_is_interpolated_and_counted(synthetic_clip, tmp_path, caplog):
    clip = _clip_with_blank_frames(tmp_path / "gap.mp4", synthetic_clip, range(60, 64))
    with caplog.at_level(logging.WARNING, logger="hm_talker"):
        m = preprocess([clip], tmp_path / "id", PreprocessConfig(size=64, shard_frames=50))
    assert m["clips"][0]["face_missing_frames"] == 4
    assert any("no face in 4 frames" in r.getMessage() for r in caplog.records)
    f = np.load(tmp_path / "id" / "features.npz")
    lm, boxes = f["landmarks"][..., :2].astype(np.float64), f["boxes"].astype(np.float64)
    assert np.isfinite(lm).all()
    # back to source pixels (undo each frame's crop): the gap is the straight line between its neighbours
    side = boxes[:, 2:3]
    src = lm / (64 / side)[:, None] + np.round(boxes[:, None, :2] - side[:, None] / 2)
    for k, t in enumerate(range(60, 64), start=1):
        expected = src[59] + k / 5 * (src[64] - src[59])
        np.testing.assert_allclose(src[t], expected, atol=0.05)


def test_long_gap_is_an_error_and_leaves_nothing(synthetic_clip, tmp_path):
    clip = _clip_with_blank_frames(tmp_path / "gap.mp4", synthetic_clip, range(40, 70))
    with pytest.raises(InputError, match=r"no face in 30 of 150 frames \(longest gap 30"):
        preprocess([clip], tmp_path / "id", PreprocessConfig(size=64))
    assert not (tmp_path / "id").exists()
