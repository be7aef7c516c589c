"""Every decoded sound is checked, whichever decoder read it (issue 19, item 3): NaN samples in a
.mov given as --audio are refused (librosa's audioread fallback decoded them to full-scale -1.0),
and a sound stuck at one value or clipped over the configured share is a warning."""
from __future__ import annotations

import logging
import re
import subprocess

import numpy as np
import pytest
import soundfile as sf

from hm_talker.errors import InputError
from hm_talker.preprocess.config import PreprocessConfig
from hm_talker.preprocess.media import audio_from_video, check_sound, load_audio


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def mov_with_sound(path, samples: np.ndarray, sr: int, codec: str = "pcm_f32le"):
    """A 64 px black .mov whose sound track is `samples` ([S] or [S, channels]) stored as `codec`."""
    wav = path.with_suffix(".src.wav")
    sf.write(wav, samples, sr, subtype="FLOAT")
    ffmpeg("-f", "lavfi", "-i", f"color=c=black:s=64x64:r=25:d={len(samples) / sr}", "-i", str(wav),
           "-c:v", "libx264", "-c:a", codec, "-shortest", str(path))
    wav.unlink()
    return path


def speechlike(seconds=2.0, sr=16000, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def sound_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and ("clipped" in r.getMessage() or "holds one value" in r.getMessage())]


@pytest.mark.parametrize("sr,channels,expected", [(16000, 1, 100), (48000, 2, 600)])
def test_nan_samples_in_a_mov_are_refused_as_audio(tmp_path, sr, channels, expected):
    """The issue's file: pcm_f32le NaN samples in a .mov given as --audio. Before: decoded through
    audioread to 16-bit, NaN became -1.0 and the sound passed. Now: the NaN samples are counted in
    the file's own rate and channels (100 at 16 kHz mono, 300 per channel at 48 kHz stereo)."""
    y = speechlike(2.0, sr)
    y[sr // 16: sr // 16 + expected // channels] = np.nan
    mov = mov_with_sound(tmp_path / "nan.mov", np.stack([y] * channels, 1) if channels > 1 else y, sr)
    with pytest.raises(InputError, match=f"nan.mov: sound has {expected} non-finite samples"):
        load_audio(mov, 16000)
    with pytest.raises(InputError, match="nan.mov: sound has .* non-finite samples"):
        audio_from_video(mov, 16000)  # the same sound as the video's own track: refused as before


def test_a_wav_reads_exactly_as_librosa_load(tmp_path):
    """Formats soundfile reads give the same samples as before (librosa.load: float32, mono mix,
    soxr_hq); others are decoded by ffmpeg in float instead of audioread's 16-bit."""
    import librosa

    rng = np.random.default_rng(0)
    stereo = (0.2 * rng.standard_normal((44100, 2))).astype(np.float32)
    sf.write(tmp_path / "s.wav", stereo, 44100, subtype="PCM_16")
    ref, _ = librosa.load(str(tmp_path / "s.wav"), sr=16000, mono=True)
    assert np.array_equal(load_audio(tmp_path / "s.wav", 16000), ref)
    mov = mov_with_sound(tmp_path / "s.mov", stereo, 44100)
    y = load_audio(mov, 16000)
    assert abs(len(y) - len(ref)) <= 16 and np.abs(y[:15000] - ref[:15000]).max() < 1e-3


def test_a_constant_sound_warns_with_its_value_and_share(tmp_path, caplog):
    """A sound stuck at -1.0 (what the NaN .mov became): both warnings, with the numbers."""
    mov = mov_with_sound(tmp_path / "dc.mov", np.full(32000, -1.0, np.float32), 16000, codec="pcm_s16le")
    with caplog.at_level(logging.WARNING, logger="hm_talker"):
        y = load_audio(mov, 16000)
    assert len(y) == 32000
    msgs = sound_warnings(caplog)
    assert len(msgs) == 2, msgs
    assert "dc.mov: 100.0 % of the sound's samples are clipped" in msgs[0]
    assert "dc.mov: the sound holds one value (-1) in 100.0 % of its samples" in msgs[1]


def test_a_clipped_sound_warns_with_its_share(tmp_path, caplog):
    """A sine of amplitude 2 clipped to full scale: |x| >= 0.999 for 1 - 2/pi * asin(0.4995) = 66.7 %
    of the samples (over the 1 % limit), each rail holding 33 % (under the 50 % limit of one value)."""
    t = np.arange(32000) / 16000  # 5 Hz: 3200 samples a period, so the share is the analytic one
    sf.write(tmp_path / "loud.wav", np.clip(2 * np.sin(2 * np.pi * 5 * t), -1, 1).astype(np.float32), 16000,
             subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="hm_talker"):
        load_audio(tmp_path / "loud.wav", 16000)
    msgs = sound_warnings(caplog)
    assert len(msgs) == 1 and "are clipped" in msgs[0], msgs
    share = float(re.search(r"([\d.]+) % of the sound's samples", msgs[0]).group(1))
    assert share == pytest.approx(100 * (1 - 2 / np.pi * np.arcsin(0.999 / 2)), abs=0.1)


def test_limits_come_from_the_config_and_speech_passes(tmp_path, caplog):
    t = np.arange(32000) / 16000
    loud = np.clip(2 * np.sin(2 * np.pi * 5 * t), -1, 1).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="hm_talker"):
        check_sound(loud, "loud", PreprocessConfig(max_clipped_fraction=0.7))  # 66.7 % < 70 %: quiet
        check_sound(speechlike(), "speech")
        check_sound(np.zeros(16000, np.float32), "digital silence")  # zeros: the silence check's business
        assert sound_warnings(caplog) == []
        # |x| >= 0.5 where |sin| >= 0.25: 1 - 2/pi * asin(0.25) = 83.9 % > 80 %
        check_sound(loud, "loud", PreprocessConfig(clip_level=0.5, max_clipped_fraction=0.8))
        check_sound(np.r_[np.full(9000, 0.25), speechlike(0.5)].astype(np.float32), "stuck",
                    PreprocessConfig(max_constant_fraction=0.5))  # 9000 of 17000 = 52.9 %
    msgs = sound_warnings(caplog)
    assert len(msgs) == 2 and "loud: 83.9 %" in msgs[0] and "stuck: the sound holds one value (0.25) in 52.9 %" \
        in msgs[1], msgs


def test_check_media_passes_its_config(tmp_path, caplog):
    """preprocess checks --audio and the video's own track with the identity's limits."""
    from hm_talker.preprocess.analysis import check_media

    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:rate=25:duration=2", "-pix_fmt", "yuv420p",
           str(tmp_path / "v.mp4"))
    t = np.arange(32000) / 16000
    sf.write(tmp_path / "loud.wav", np.clip(2 * np.sin(2 * np.pi * 200 * t), -1, 1).astype(np.float32), 16000,
             subtype="FLOAT")
    mov_with_sound(tmp_path / "track.mov", np.clip(2 * np.sin(2 * np.pi * 200 * t), -1, 1).astype(np.float32),
                   16000)
    with caplog.at_level(logging.WARNING, logger="hm_talker"):
        check_media(tmp_path / "v.mp4", tmp_path / "loud.wav", PreprocessConfig(max_clipped_fraction=0.9))
        assert sound_warnings(caplog) == []
        check_media(tmp_path / "v.mp4", tmp_path / "loud.wav", PreprocessConfig())
        check_media(tmp_path / "track.mov", None, PreprocessConfig())
    msgs = sound_warnings(caplog)
    assert len(msgs) == 2 and "loud.wav" in msgs[0] and "track.mov" in msgs[1], msgs
