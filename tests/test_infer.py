"""`hm-talker infer`: frame count and sound length, any audio format, clear errors."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from conftest import ffmpeg
from hm_talker.cli import main


def probe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,nb_read_frames,r_frame_rate,duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    from hm_talker.synthetic import make_synthetic_speech

    d = tmp_path_factory.mktemp("speech")
    make_synthetic_speech(d / "s33.wav", seconds=3.3, seed=7)
    ffmpeg("-i", str(d / "s33.wav"), "-ar", "44100", "-ac", "2", str(d / "s33_44k_stereo.ogg"))
    return d


@pytest.mark.parametrize("name", ["s33.wav", "s33_44k_stereo.ogg"])
def test_3_3_seconds_of_speech_give_83_frames_with_sound(trained_ckpt, speech, tmp_path, capsys, name):
    out = tmp_path / "driven.mp4"
    assert main(["infer", "--ckpt", str(trained_ckpt), "--audio", str(speech / name), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["frames"] == 83 and report["render_fps"] > 0
    s = probe(out)
    assert int(s["video"]["nb_read_frames"]) == 83 and s["video"]["r_frame_rate"] == "25/1"
    assert abs(float(s["audio"]["duration"]) - 83 / 25) < 0.04  # the sound lasts as long as the video
    assert [p.name for p in tmp_path.iterdir()] == ["driven.mp4"]  # no temporary files left


def test_ping_pong_replay_has_no_jump():
    from hm_talker.driving.render import ping_pong

    seq = [ping_pong(k, 4) for k in range(10)]
    assert seq == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert max(abs(a - b) for a, b in zip(seq, seq[1:])) == 1


def run_err(capsys, *argv):
    code = main(["infer", *map(str, argv)])
    return code, capsys.readouterr().err.strip()


def test_missing_and_corrupt_checkpoint(speech, tmp_path, capsys):
    code, err = run_err(capsys, "--ckpt", tmp_path / "nope.ckpt", "--audio", speech / "s33.wav", "--out", tmp_path / "o.mp4")
    assert code == 2 and "nope.ckpt: no such checkpoint" in err
    (tmp_path / "bad.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    code, err = run_err(capsys, "--ckpt", tmp_path / "bad.ckpt", "--audio", speech / "s33.wav", "--out", tmp_path / "o.mp4")
    assert code == 2 and "bad.ckpt: corrupt" in err
    assert not (tmp_path / "o.mp4").exists()


def test_checkpoint_trained_on_other_audio_features(trained_ckpt, speech, tmp_path, capsys):
    ckpt = torch.load(trained_ckpt, weights_only=True)
    ckpt["config"]["model"]["audio"]["feature_dim"] = 768  # as if trained on HuBERT-base features
    ckpt["config"]["model"]["audio"]["rows_per_frame"] = 2
    torch.save(ckpt, tmp_path / "hubert.ckpt")
    code, err = run_err(capsys, "--ckpt", tmp_path / "hubert.ckpt", "--audio", speech / "s33.wav",
                        "--out", tmp_path / "o.mp4")
    assert code == 2 and "trained on audio features of shape [2, 768]" in err


def test_missing_and_corrupt_audio(trained_ckpt, tmp_path, capsys):
    code, err = run_err(capsys, "--ckpt", trained_ckpt, "--audio", tmp_path / "none.wav", "--out", tmp_path / "o.mp4")
    assert code == 2 and "none.wav: no such file" in err
    (tmp_path / "junk.wav").write_bytes(b"RIFF....WAVEjunk")
    code, err = run_err(capsys, "--ckpt", trained_ckpt, "--audio", tmp_path / "junk.wav", "--out", tmp_path / "o.mp4")
    assert code == 2 and "junk.wav: unreadable audio" in err
    assert not (tmp_path / "o.mp4").exists()
