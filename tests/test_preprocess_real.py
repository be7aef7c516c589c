"""Preprocessing each real clip of the shared data: counts, faces, AUs, poses, manifest."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conftest import REAL_CLIPS, real_file
from hm_talker.constants import AU_NAMES, LM
from hm_talker.preprocess.config import PreprocessConfig
from hm_talker.preprocess.pipeline import preprocess


@pytest.fixture(scope="module", params=sorted(REAL_CLIPS))
def real_identity(request, tmp_path_factory):
    src = real_file(request.param)
    out = tmp_path_factory.mktemp("real") / src.stem
    manifest = preprocess([src], out, PreprocessConfig(size=256, shard_frames=64))
    feats = dict(np.load(out / "features.npz", allow_pickle=False))
    return request.param, out, manifest, feats


def test_frame_count_follows_duration_at_25fps(real_identity):
    name, _, m, feats = real_identity
    n_src, fps = REAL_CLIPS[name]
    expected = n_src / fps * 25
    assert abs(m["num_frames"] - expected) <= 1.0, (m["num_frames"], expected)
    assert m["fps"] == 25 and m["sample_rate"] == 16000 and m["size"] == 256
    assert len(feats["aus"]) == m["num_frames"] == sum(m["splits"].values())
    assert m["splits"]["val"] == round(m["num_frames"] / 11)
    # resampled source indices are monotone and span the clip
    src = feats["src_frames"]
    assert np.all(np.diff(src) >= 0) and src[0] == 0 and src[-1] >= n_src - 2


def test_face_in_every_frame(real_identity):
    _, _, m, feats = real_identity
    assert m["clips"][0]["face_missing_frames"] == 0
    lm = feats["landmarks"]
    assert np.isfinite(lm).all()
    # the face sits inside the crop: the nose tip near the centre, the landmark box within the frame
    nose = lm[:, LM["nose_tip"], :2]
    assert np.all(np.abs(nose - 128) < 60)
    assert lm[..., :2].min() > -5 and lm[..., :2].max() < 261


def test_aus_finite_in_range_and_follow_the_lips(real_identity):
    _, _, m, feats = real_identity
    aus = feats["aus"]
    assert aus.shape[1] == 17 and m["features"]["aus"]["names"] == AU_NAMES
    assert np.isfinite(aus).all() and aus.min() >= 0.0 and aus.max() <= 5.0
    lm = feats["landmarks"]
    inner = np.linalg.norm(lm[:, LM["lip_low_inner"]] - lm[:, LM["lip_up_inner"]], axis=1)
    for au in ("AU25", "AU26"):
        r = np.corrcoef(aus[:, AU_NAMES.index(au)], inner)[0, 1]
        assert r > (0.9 if au == "AU25" else 0.4), (au, r)
    assert aus[:, AU_NAMES.index("AU25")].std() > 0.1  # the speaker's lips do move


def test_poses_finite_and_smooth(real_identity):
    _, _, _, feats = real_identity
    ext = feats["extrinsics"]
    assert np.isfinite(ext).all() and np.isfinite(feats["intrinsics"]).all()
    R = ext[:, :3, :3]
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-4)
    step = Rotation.from_matrix(R[1:]).inv() * Rotation.from_matrix(R[:-1])
    assert np.degrees(step.magnitude()).max() < 4.0  # talking heads turn slowly
    t = ext[:, :3, 3]
    assert (t[:, 2] > 0).all()  # in front of the camera
    assert np.abs(np.diff(t, axis=0)).max() < 0.1 * t[:, 2].mean()
    # the mean shape reprojected through each pose lands on the landmarks (sub-2-pixel at 256)
    from hm_talker.preprocess.pose import project
    err = np.mean([np.abs(project(feats["mean_shape"], ext[i], feats["intrinsics"][i])
                          - feats["landmarks"][i, :, :2]).mean() for i in range(len(ext))])
    assert err < 2.0, err


def test_manifest_records_features_and_versions(real_identity):
    _, out, m, _ = real_identity
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == m
    assert m["features"]["audio"] == {"kind": "mel", "shape": [4, 80], "rows_per_frame": 4}
    assert m["features"]["landmarks"]["shape"] == [478, 3]
    assert {"numpy", "torch", "mediapipe", "decord"} <= set(m["versions"])
    assert not (out / ".work").exists() and not list(out.glob("*.partial"))
