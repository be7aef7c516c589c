"""The method's claim on the synthetic talker, driven by held-out speech: the default model's mouth follows
the speech (mouth_r >= 0.7, mouth_amp within [0.6, 1.4] against the same face saying that speech), driven
by CMMM-predicted AUs. Slow: one fit of the demo's size, STEPS steps. (The synthetic talker's mouth is its
loudness: the real-speech claim is tests/test_cmmm_transfer.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest

from hm_talker.demo import demo_overrides, measure_lip_sync

MIN_MOUTH_R, AMP_RANGE = 0.7, (0.6, 1.4)  # issue 9's bounds
STEPS = 500  # the demo's 300 steps measured mouth_r 0.84, mouth_amp 0.66: too close to the bound
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="module")
def talker(tmp_path_factory):
    """A 12 s synthetic talker at 128 px, and the same face saying 6 s of other speech (the reference)."""
    import soundfile as sf

    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip, make_synthetic_speech

    tmp = tmp_path_factory.mktemp("lipsync")
    clip = make_synthetic_clip(tmp / "talker.mp4", seconds=12.0, size=256, seed=0)
    preprocess([clip.path], tmp / "identity", PreprocessConfig(size=128, shard_frames=32))
    make_synthetic_speech(tmp / "speech.wav", seconds=6.0, seed=11)
    wav, sr = sf.read(tmp / "speech.wav", dtype="float32")
    make_synthetic_clip(tmp / "reference.mp4", size=256, seed=0, speech=wav, sample_rate=sr)
    return tmp


def _lip_sync(talker, experiment: str, name: str) -> dict:
    from hm_talker.training.fit import fit

    runs = talker / "runs"
    fit(str(EXPERIMENTS / experiment), demo_overrides(talker / "identity", runs, name, STEPS), False)
    return measure_lip_sync(runs / name / "checkpoints" / "last.ckpt", talker / "reference.mp4", talker / name)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_full_model_follows_held_out_speech(talker):
    full = _lip_sync(talker, "hm_talker.yaml", "default")
    print(f"full: mouth_r {full['mouth_r']:.3f} mouth_amp {full['mouth_amp']:.3f}")
    assert full["mouth_r"] >= MIN_MOUTH_R
    assert AMP_RANGE[0] <= full["mouth_amp"] <= AMP_RANGE[1]
