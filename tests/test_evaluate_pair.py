"""`hm-talker evaluate --pred --target` on real frames: identical inputs, a shifted clip."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hm_talker.cli import main


@pytest.fixture(scope="module")
def frames_dirs(tmp_path_factory, synthetic_clip):
    from hm_talker.data.clips import load_frames
    from hm_talker.preprocess.shards import encode_image

    frames = load_frames(synthetic_clip.path)[:40]
    root = tmp_path_factory.mktemp("frames")
    for name, seq in (("real", frames), ("shifted", frames[np.r_[0, 0:len(frames) - 1]])):
        (root / name).mkdir()
        for i, f in enumerate(seq):
            (root / name / f"{i:04d}.png").write_bytes(encode_image(f, "png"))
    return root


def test_identical_inputs_give_perfect_scores(frames_dirs, tmp_path, capsys):
    assert main(["evaluate", "--pred", str(frames_dirs / "real"), "--target", str(frames_dirs / "real"),
                 "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["psnr"] == 100.0 and m["ssim"] == pytest.approx(1.0, abs=1e-4)
    assert m["lpips"] == pytest.approx(0.0, abs=1e-6) and m["lmd"] == 0.0 and m["aue"] == 0.0
    assert m["num_frames"] == 40 and m["sync_c"] is None and "sync_c" in m["notes"]
    assert m["mouth_r"] == pytest.approx(1.0) and m["mouth_lag"] == 0 and m["mouth_amp"] == pytest.approx(1.0)
    md = (tmp_path / "metrics.md").read_text()
    assert md.startswith("# hm-talker evaluate: pair")
    assert md.index("psnr_face") < md.index("mouth_r") < md.index("| psnr |")  # face region is the headline
    assert "40 lip points" in m["notes"]["lmd_definition"]


def test_one_frame_shift_gives_worse_lmd(frames_dirs, tmp_path):
    assert main(["evaluate", "--pred", str(frames_dirs / "shifted"), "--target", str(frames_dirs / "real"),
                 "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["lmd"] > 0.1 and m["psnr"] < 100.0 and m["aue"] > 0.0
    assert m["mouth_lag"] == 1 and m["mouth_r_best"] > 0.95  # shifted[t] = real[t - 1]: lags by one frame


def test_size_mismatch_is_an_error(frames_dirs, tmp_path, capsys):
    from PIL import Image
    Image.new("RGB", (10, 10)).save(tmp_path / "small.png")
    code = main(["evaluate", "--pred", str(tmp_path / "small.png"), "--target",
                 str(frames_dirs / "real" / "0000.png"), "--out", str(tmp_path / "o")])
    assert code == 2 and "small.png" in capsys.readouterr().err
