"""`hm-talker evaluate --ckpt --drive-video REF`: a real video's sound drives the model, its mouth is the reference."""
from __future__ import annotations

import json

import pytest

from conftest import ffmpeg, real_file
from hm_talker.cli import main


def test_drive_video_scores_the_mouth_against_the_reference(trained_ckpt, tmp_path):
    ref = real_file("face4_30fps.mp4")  # 30 fps, 44.1 kHz stereo: both resampled
    assert main(["evaluate", "--ckpt", str(trained_ckpt), "--drive-video", str(ref), "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["protocol"] == "cross-video" and m["inputs"]["drive_video"] == str(ref)
    assert m["reference_frames"] == round(199 * 25 / 30)  # REF resampled to 25 fps
    assert abs(m["num_frames"] - m["reference_frames"]) <= 1  # one frame per 40 ms of REF's sound
    assert m["psnr_face"] is None and "another person" in m["notes"]["psnr_face"]
    for key in ("mouth_r", "mouth_r_best", "mouth_lag", "mouth_amp", "mouth_jitter"):
        assert key in m and (m[key] is not None or key in m["notes"])
    assert "positive = the generated mouth lags" in m["notes"]["mouth_definition"]
    assert "S3FD" in m["notes"]["sync_definition"]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["protocol"] == "cross-video" and "eval-cross-video" in s["tags"] and s["name"] == "brief-cross-video"
    assert (tmp_path / "driven.mp4").is_file()


def test_a_reference_without_sound_is_a_one_line_error(trained_ckpt, tmp_path, capsys):
    silent = tmp_path / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=128x128:rate=25", "-t", "1", "-pix_fmt", "yuv420p", str(silent))
    assert main(["evaluate", "--ckpt", str(trained_ckpt), "--drive-video", str(silent), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "silent.mp4" in err and "no sound track" in err and len(err.splitlines()) == 1


def test_a_reference_without_a_face_is_a_one_line_error(trained_ckpt, tmp_path, capsys):
    noface = tmp_path / "noface.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=128x128:rate=25", "-f", "lavfi", "-i", "sine=frequency=300",
           "-t", "1", "-pix_fmt", "yuv420p", "-shortest", str(noface))
    assert main(["evaluate", "--ckpt", str(trained_ckpt), "--drive-video", str(noface), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "noface.mp4" in err and "no face" in err and len(err.splitlines()) == 1


def test_drive_video_takes_only_a_checkpoint(tmp_path, capsys):
    assert main(["evaluate", "--ckpt", "a", "--data", "b", "--drive-video", "c", "--out", str(tmp_path)]) == 2
    assert "evaluate takes" in capsys.readouterr().err


def test_a_reference_with_short_sound_is_warned_about_and_noted(trained_ckpt, synthetic_clip, tmp_path, capsys):
    """Picture 6 s, sound 1 s: the driven clip is as long as the sound, so 1 s is scored; say so (issue 19.6)."""
    ref = tmp_path / "short_sound.mp4"
    ffmpeg("-i", str(synthetic_clip.path), "-map", "0:v", "-map", "0:a", "-c:v", "copy", "-af", "atrim=0:1",
           "-c:a", "aac", str(ref))
    capsys.readouterr()
    assert main(["evaluate", "--ckpt", str(trained_ckpt), "--drive-video", str(ref), "--out", str(tmp_path / "o")]) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "WARNING" in ln and "short_sound.mp4" in ln]
    # aac pads the 1 s of sound to whole 1024-sample frames: 1.02 s
    assert len(warned) == 1 and "picture 6.00 s, sound 1.02 s" in warned[0], warned
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert "picture 6.00 s, sound 1.02 s" in m["notes"]["reference_length"]
    assert m["num_frames"] == 26 and m["reference_frames"] == 150  # what was scored, and what REF holds
