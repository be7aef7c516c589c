"""The rendered region's room for the jaw is the identity's widest jaw, measured on its training frames."""
import json

import numpy as np
import torch

from hm_talker.constants import LM
from hm_talker.data.identity import load_features, load_manifest
from hm_talker.model.jaw_room import JAW_QUANTILE, jaw_room, needed_stretch

CHIN = LM["chin"]


def _camera(t: int):
    """t frames of a camera 4 head units in front of the head (a little yaw per frame), focal 100 px."""
    ext = np.tile(np.eye(4), (t, 1, 1))
    for i, yaw in enumerate(np.linspace(-0.2, 0.2, t)):
        c, s = np.cos(yaw), np.sin(yaw)
        ext[i, :3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    ext[:, 2, 3] = 4.0
    k = np.tile(np.array([[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]]), (t, 1, 1))
    return ext, k


def test_needed_stretch_recovers_a_known_jaw_drop():
    rng = np.random.default_rng(0)
    shape = rng.normal(scale=0.3, size=(478, 3))
    shape[LM["nose_tip"]] = [0.0, 0.1, -0.2]
    shape[CHIN] = [0.0, 0.9, 0.0]
    drop = np.linspace(0.0, 0.2, 50)  # the known share by which each frame's chin is lower than the mean shape's
    ext, k = _camera(len(drop))
    cam = np.einsum("pj,tij->tpi", shape, ext[:, :3, :3]) + ext[:, None, :3, 3]
    uv = np.einsum("tpj,tij->tpi", cam, k)
    lm = uv[..., :2] / uv[..., 2:]
    nose, chin = lm[:, LM["nose_tip"]], lm[:, CHIN].copy()
    lm[:, CHIN] = nose + (lm[:, CHIN] - nose) * (1 + drop[:, None])  # the chin moved down along the face
    np.testing.assert_allclose(needed_stretch(lm, shape, ext, k), drop, atol=1e-9)
    feats = {"landmarks": lm, "mean_shape": shape, "extrinsics": ext, "intrinsics": k}
    assert abs(jaw_room(feats, slice(None), 0.05) - (np.percentile(drop, JAW_QUANTILE) + 0.05)) < 1e-9
    assert abs(jaw_room(feats, slice(0, 10), 0.05) - (np.percentile(drop[:10], JAW_QUANTILE) + 0.05)) < 1e-9
    lm[:, CHIN] = nose + (chin - nose) * 0.9  # every chin above the mean's: the margin alone
    assert abs(jaw_room(feats, slice(None), 0.05) - 0.05) < 1e-12


def test_fit_sets_the_region_from_the_training_frames(trained_ckpt):
    """The short fit of conftest: its checkpoint's chin room is the one measured on its identity's training frames
    (not the config's 0.25), and the rendered region it builds uses it."""
    from hm_talker.driving.checkpoint import load_module

    ckpt = torch.load(trained_ckpt, weights_only=True)
    model = ckpt["config"]["model"]
    root = ckpt["config"]["data"]["root"]
    manifest = load_manifest(root)
    features = load_features(root)
    want = jaw_room(features, slice(0, int(manifest["splits"]["train"])), model["face_region_chin_margin"])
    assert model["face_region_chin_measure"] and abs(model["face_region_chin"] - want) < 1e-9
    assert abs(want - 0.25) > 0.02, want  # a synthetic talker's jaw is not what the fixed default assumed
    summary = json.loads((trained_ckpt.parents[1] / "summary.json").read_text())
    assert abs(summary["config"]["model.face_region_chin"] - want) < 1e-9
    module, _, _ = load_module(trained_ckpt, None, "cpu")
    outline, shape = module.head.region_outline, torch.as_tensor(np.asarray(features["mean_shape"]))
    nose_y = shape[LM["nose_tip"], 1]
    lowest = outline[:, 1].max()
    assert abs(float((lowest - nose_y) / (shape[CHIN, 1] - nose_y)) - (1 + want)) < 1e-4


def test_a_resumed_run_keeps_the_region_it_started_with(identity64, tmp_path):
    """Started with a fixed room (as every run before the room was measured), resumed with the default: the
    region does not change under the trained Gaussians."""
    from conftest import SMALL

    from hm_talker.training.fit import fit

    common = [f"data.root={identity64}", f"run.dir={tmp_path}", "run.name=r", *SMALL, "trainer.val_every=1000",
              "trainer.limit_val_batches=1"]
    fit(None, [*common, "trainer.max_steps=2", "model.face_region_chin_measure=false", "model.face_region_chin=0.3"],
        False)
    run = fit(None, [*common, "trainer.max_steps=4"], True)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["config"]["model"]["face_region_chin"] == 0.3
