"""No mouth information from the scored frames (issue 17): a deaf model (every audio input at its mean)
scored by the self-driven protocol must not follow the held-out mouth.

The synthetic talker holds its head still (head_motion=0), its brows never move and its mouth is its
loudness; the eyes blink on their own clock, so nothing of the upper face legitimately predicts the mouth.
The head pose is held at the clip's first frame's: the tracked pose of a still head still tilts a little
with the jaw (a landmark fit artefact, -0.76 correlation between pitch and opening on this clip), a
separate channel reported in the issue's note. The same artefact makes the eye and brow AUs measured on
the frames carry the mouth (AU01 -0.54, AU04 0.50 with the opening here), and the landmark tracker reads
rendered brows into the lip gap, although the rendered pixels differ only above the lips: given the scored
frames' own eyes and brows, this deaf model scored 0.22 against a chance level of 0.09. So the protocol
does not give them (`evaluate --upper-aus`, default predicted: CMMM's, from the held-out sound), and this
test renders every frame the way the protocol renders a held-out one."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from hm_talker.evaluation.protocols import self_driven
from hm_talker.metrics.correlation import pearson

PROTOCOL_UPPER_AUS = inspect.signature(self_driven).parameters["upper_aus"].default

FIT = ["trainer.max_steps=300", "trainer.val_every=300", "model.gaussians.num_face=1000",
       "model.gaussians.num_mouth=150", "schedule.mouth_warmup_steps=50", "strategy.refine_start=50",
       "strategy.refine_every=100", "strategy.refine_stop=201", "cmmm.pretrain_steps=100",
       "model.silence_audio=true", "eval.lip_sync=false", "data.num_workers=0"]


@pytest.fixture(scope="module")
def still_identity(tmp_path_factory):
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip

    d = tmp_path_factory.mktemp("still")
    clip = make_synthetic_clip(d / "still.mp4", seconds=40.0, size=256, seed=1, head_motion=0.0)
    preprocess([clip.path], d / "ident", PreprocessConfig(size=128, shard_frames=64))
    return d / "ident", clip


def _driven_mouth(ckpt, root) -> np.ndarray:
    """The generated mouth opening of every frame of the identity (training and held-out), each rendered
    as the self-driven protocol renders a held-out frame (the frame's background, the protocol's upper-face
    AUs), the lower face deaf, the pose held at the first frame's; the rendered frames are tracked as they
    come, as `evaluate` scores generated frames."""
    import torch

    from hm_talker.constants import LOWER_AU_IDX
    from hm_talker.data.identity import IdentityFrames, load_manifest
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.driving.render import frame_batch, render
    from hm_talker.driving.speech import identity_windows
    from hm_talker.metrics.mouth import mouth_opening
    from hm_talker.preprocess.landmarks import LandmarkTrack

    model, _, _ = load_module(ckpt, device="cpu")
    m = load_manifest(root)
    clip, windows = IdentityFrames(root, m), identity_windows(root, m, model.cfg)
    still = clip[0]
    with LandmarkTrack() as track, torch.no_grad():
        for k0 in range(0, clip.num_frames, 8):
            ks = list(range(k0, min(clip.num_frames, k0 + 8)))
            batch = frame_batch(model, [{**clip[k], "extrinsics": still["extrinsics"]} for k in ks], windows, ks)
            batch["aus"][:, LOWER_AU_IDX] = 0.0  # as the self-driven protocol: no measurement of the mouth
            batch["upper_au_source"] = PROTOCOL_UPPER_AUS  # nor of the eyes and brows
            track.update(render(model, batch))
        return mouth_opening(track.landmarks())


def _chance(driven: np.ndarray, truth: np.ndarray) -> float:
    """The 95th percentile of |r| between the driven mouth and the true mouth shifted by 2 s or more
    (circularly): what two unrelated smooth tracks of this length reach."""
    n = len(truth)
    return float(np.percentile([abs(pearson(driven, np.roll(truth, s))) for s in range(50, n - 50, 7)], 95))


@pytest.mark.slow
def test_a_deaf_model_does_not_follow_the_scored_mouth(still_identity, tmp_path):
    """Scored over the whole clip (1000 frames) against the synthetic talker's true mouth opening, with a
    chance level from the same tracks shifted in time. Over the 91 held-out frames alone two unrelated smooth
    tracks reach |r| 0.4 by chance, and there the old settings' (AU06 / AU09, gates everywhere, the frame's
    mask) score moved from 0.64 to 0.43 between two trees while over the whole clip it is -0.19: too weak and
    unstable a signal to assert that the test sees it. That the condition's reach is what blocks the lips is
    asserted directly, and fails under the old reach, in
    tests/test_hmmm.py::test_the_scored_frames_aus_cannot_move_the_lips_or_jaw."""
    from hm_talker.training.fit import fit

    root, clip = still_identity
    truth = clip.mouth_open[np.load(root / "features.npz")["src_frames"]]
    run = fit(None, [f"data.root={root}", f"run.dir={tmp_path}", "run.name=default", *FIT], False)
    driven = _driven_mouth(run / "checkpoints" / "last.ckpt", root)
    r, chance = pearson(driven, truth), _chance(driven, truth)
    assert np.isfinite(driven).mean() > 0.95  # a face was rendered and tracked in (nearly) every frame
    assert chance < 0.3, chance
    assert PROTOCOL_UPPER_AUS != "frames"
    assert abs(r) < max(chance, 0.15), (r, chance)  # measured 0.03 (chance 0.09); 0.22 with the frames' upper AUs
