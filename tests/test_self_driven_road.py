"""One road for a sound: the self-driven protocol (`evaluate --data`, validation's val/mouth_*) drives the
held-out frames with their own sound exactly as `infer` drives any sound (its own features, band statistics
and calibration), not with the identity's features.npz windows and the identity's statistics."""
from __future__ import annotations

import numpy as np
import torch


def _spy_predicted_aus(model) -> list:
    """Record CMMM's calibrated AUs of every rendered batch (what drives the lower face)."""
    record, conditions = [], model.conditions

    def spy(batch, *args, **kwargs):
        out = conditions(batch, *args, **kwargs)
        record.append(out["pred_aus"].detach().clone())
        return out

    model.conditions = spy
    return record


def test_self_driven_predicts_the_mouth_infer_predicts_from_the_same_sound(trained_ckpt, identity64, tmp_path):
    from hm_talker.data.identity import held_out_frames
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.driving.render import drive, render_held_out
    from hm_talker.driving.speech import identity_windows, sound_of_frames
    from hm_talker.evaluation.protocols import self_driven

    model, root, manifest = load_module(trained_ckpt, identity64, device="cpu")
    record = _spy_predicted_aus(model)
    metrics = self_driven(model, root, manifest)
    evaluated = torch.cat(record)
    frames = held_out_frames(manifest)
    assert metrics["num_frames"] == len(frames) == len(evaluated) == 14

    record.clear()
    sound = sound_of_frames(root, manifest["fps"], frames[0], frames[-1])
    assert len(sound) == round(len(frames) * manifest["sample_rate"] / manifest["fps"])
    drive(model, root, manifest, sound, tmp_path / "held_out.mp4")
    inferred = torch.cat(record)
    assert len(inferred) == len(frames)
    torch.testing.assert_close(evaluated, inferred, rtol=1e-5, atol=1e-5)

    # the road it replaced (the identity's windows and statistics) predicts another mouth for these frames
    record.clear()
    for _ in render_held_out(model, root, manifest, identity_windows(root, manifest, model.cfg)):
        pass
    old = torch.cat(record)
    assert float((old - evaluated).abs().max()) > 1e-3


def test_self_driven_without_audio_wav_falls_back_to_the_identity_windows(trained_ckpt, identity64, tmp_path):
    """An identity preprocessed before audio.wav existed still evaluates (features.npz windows), with a note."""
    import shutil

    from hm_talker.driving.checkpoint import load_module
    from hm_talker.evaluation.protocols import self_driven

    old = tmp_path / "old"
    shutil.copytree(identity64, old)
    (old / "audio.wav").unlink()
    model, root, manifest = load_module(trained_ckpt, old, device="cpu")
    m = self_driven(model, root, manifest)
    assert m["num_frames"] == 14 and np.isfinite(m["psnr_face"])
    assert "audio.wav" in m["notes"]["sync_c"]


def test_self_driven_reads_nothing_of_the_scored_frames_face(trained_ckpt, identity64, monkeypatch):
    """The held-out frames' measured AUs (eyes and brows included: they carry the mouth, see
    tests/test_mouth_leak.py) never reach the model in the protocol: the face branch's condition and the
    rendered frames stay the same when they change; with `upper_aus="frames"` (the field's protocol, a
    comparison only) the same change reaches the face branch."""
    from hm_talker.constants import AU_MAX
    from hm_talker.data.identity import IdentityFrames
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.driving.render import render_held_out
    from hm_talker.driving.speech import held_out_speech

    model, root, manifest = load_module(trained_ckpt, identity64, device="cpu")
    windows, speaker, offset = held_out_speech(model, root, manifest)
    conditions, upper = model.conditions, []

    def spy(batch, *args, **kwargs):  # the eye/brow condition the face branch receives
        out = conditions(batch, *args, **kwargs)
        upper.append(out["upper"].detach().clone())
        return out

    model.conditions = spy

    def rendered(upper_aus: str) -> tuple[np.ndarray, torch.Tensor]:
        upper.clear()
        chunks = render_held_out(model, root, manifest, windows, 8, False, speaker, offset, upper_aus)
        return np.concatenate([c[0] for c in chunks]), torch.cat(upper)

    real = {source: rendered(source) for source in ("predicted", "frames")}
    item = IdentityFrames.__getitem__

    def other_face(self, k):  # every AU of every frame moved to the other end of its range
        s = item(self, k)
        return {**s, "aus": AU_MAX - s["aus"]}

    monkeypatch.setattr(IdentityFrames, "__getitem__", other_face)
    frames, condition = rendered("predicted")
    assert np.array_equal(frames, real["predicted"][0]) and torch.equal(condition, real["predicted"][1])
    assert float((rendered("frames")[1] - real["frames"][1]).abs().mean()) > 0.1
