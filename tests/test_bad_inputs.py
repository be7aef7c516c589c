"""Every kind of bad input: one clear line naming the file, exit code 2, no output directory."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from conftest import ffmpeg
from hm_talker.cli import main


def run_cli(capsys, *argv):
    code = main(["-q", "preprocess", *map(str, argv)])
    err = capsys.readouterr().err.strip().splitlines()
    return code, [line for line in err if line.startswith("hm-talker: error")]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=2", "-f", "lavfi",
           "-i", "sine=frequency=300:duration=2", "-shortest", "-pix_fmt", "yuv420p", str(d / "noface.mp4"))
    data = (d / "noface.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=2", str(d / "audio_only.m4a"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=2", "-an", "-pix_fmt", "yuv420p",
           str(d / "silent_film.mp4"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=0.2", "-f", "lavfi",
           "-i", "sine=frequency=300:duration=0.2", "-pix_fmt", "yuv420p", str(d / "short.mp4"))
    return d


@pytest.mark.parametrize("name, problem", [
    ("missing.mp4", "no such file"),
    ("garbage.mp4", "unreadable or truncated"),
    ("truncated.mp4", "unreadable or truncated"),
    ("audio_only.m4a", "no video stream"),
    ("silent_film.mp4", "no sound track"),
    ("short.mp4", "clip too short"),
    ("noface.mp4", "no face found in any frame"),
])
def test_bad_video_is_one_line_error_and_no_output(media, tmp_path, capsys, name, problem):
    out = tmp_path / "out"
    code, errors = run_cli(capsys, media / name, "--out", out, "--size", "64")
    assert code == 2
    assert len(errors) == 1 and name in errors[0] and problem in errors[0], errors
    assert not out.exists()


def test_unreadable_audio_file(media, tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    code, errors = run_cli(capsys, media / "noface.mp4", "--audio", tmp_path / "bad.wav", "--out", out)
    assert code == 2 and "bad.wav" in errors[0] and "unreadable audio" in errors[0]
    assert not out.exists()


def test_unknown_override_key_is_an_error(media, tmp_path, capsys):
    code, errors = run_cli(capsys, media / "noface.mp4", "--out", tmp_path / "o", "--set", "no_such_key=1")
    assert code == 2 and "unknown config key" in errors[0]


def test_length_mismatch_is_trimmed_with_a_warning(synthetic_clip, tmp_path, caplog):
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess

    sr = synthetic_clip.sample_rate
    short = synthetic_clip.audio[: int(4.0 * sr)]  # 4 s of speech for a 6 s video
    sf.write(tmp_path / "short.wav", short, sr)
    with caplog.at_level(logging.WARNING, logger="hm_talker"):
        m = preprocess([synthetic_clip.path], tmp_path / "o", PreprocessConfig(size=64, shard_frames=50),
                       audio=tmp_path / "short.wav")
    assert m["num_frames"] == 100 and m["clips"][0]["trimmed_frames"] == synthetic_clip.num_frames - 100
    assert any("trimming both to 4.00 s" in r.getMessage() for r in caplog.records)


def test_silent_audio_is_a_warning(synthetic_clip, tmp_path, caplog):
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess

    sf.write(tmp_path / "silence.wav", np.zeros(int(6.0 * 16000), np.float32), 16000)
    with caplog.at_level(logging.WARNING, logger="hm_talker"):
        m = preprocess([synthetic_clip.path], tmp_path / "o", PreprocessConfig(size=64, shard_frames=50),
                       audio=tmp_path / "silence.wav")
    assert m["num_frames"] == synthetic_clip.num_frames
    assert any("silent" in r.getMessage() for r in caplog.records)


def test_fit_without_ffmpeg_fails_before_training_in_one_line(identity64, tmp_path, capsys, monkeypatch):
    """Found on the GPU machine, whose image has no ffmpeg: the fit trained to its end, then the validation
    video's missing binary came out as `RUN_DIR: writing failed (No such file or directory)`."""
    from conftest import SMALL

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no ffmpeg on it
    code = main(["-q", "fit", f"data.root={identity64}", f"run.dir={tmp_path}", "run.name=r", *SMALL])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert "ffmpeg not found (fit writes its validation videos with it): install ffmpeg" in err[0], err
    assert not (tmp_path / "r" / "checkpoints").exists()
