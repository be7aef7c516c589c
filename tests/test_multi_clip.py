"""Several clips of one identity (a folder) become one identity with clip-aware windows."""
from __future__ import annotations

import numpy as np

from hm_talker.data.windows import Windows
from hm_talker.preprocess.config import PreprocessConfig
from hm_talker.preprocess.pipeline import preprocess


def test_folder_of_clips_is_one_identity(tmp_path):
    from hm_talker.synthetic import make_synthetic_clip

    src = tmp_path / "person"
    src.mkdir()
    a = make_synthetic_clip(src / "a.mp4", seconds=2.0, size=128, seed=4)
    b = make_synthetic_clip(src / "b.mp4", seconds=3.0, size=128, seed=4)
    m = preprocess([src], tmp_path / "id", PreprocessConfig(size=64, shard_frames=32))
    assert [c["file"] for c in m["clips"]] == ["a.mp4", "b.mp4"]
    assert [c["num_frames"] for c in m["clips"]] == [a.num_frames, b.num_frames]
    assert [c["start"] for c in m["clips"]] == [0, a.num_frames]
    f = np.load(tmp_path / "id" / "features.npz")
    assert f["clip_ids"].tolist() == [0] * a.num_frames + [1] * b.num_frames
    w = Windows(f["audio"], f["aus"], f["clip_ids"], 8)
    first_of_b = a.num_frames
    assert w.indices(first_of_b).min() == first_of_b  # a window never reaches into the other clip
    assert w.indices(first_of_b - 1).max() == first_of_b - 1
