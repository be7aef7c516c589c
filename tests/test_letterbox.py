"""Videos with black bars (letterbox): the picture preprocessing finds in a real mp4 is the one the bars were
added around (known geometry), a crop that reaches onto the bars is warned of, and crop_inside keeps every
written frame off them."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from conftest import ffmpeg

from hm_talker.preprocess.track import fit_into_region, off_region_fraction, picture_region

BAR = 48  # rows of black added above and below the 256 x 256 synthetic clip


def test_the_picture_is_the_frame_less_its_dark_border_rows_and_columns():
    rows = np.r_[np.zeros(10), np.full(80, 200), np.zeros(10)]  # 100 analysed rows of a 200-row video
    cols = np.r_[np.full(150, 90), np.full(10, 16)]  # the last 10 of 160 columns at the level: bar
    assert picture_region(rows, cols, 16, 320, 200) == (0.0, 20.0, 300.0, 180.0)
    assert picture_region(np.zeros(100), cols, 16, 320, 200) == (0.0, 0.0, 320.0, 200.0)  # all dark: no bars
    inside = fit_into_region(np.array([[160.0, 30.0, 100.0], [250.0, 100.0, 300.0]]), (0, 20, 300, 180))
    np.testing.assert_allclose(inside, [[160, 70, 100], [220, 100, 160]])
    assert (off_region_fraction(inside, (0, 20, 300, 180)) == 0).all()


@pytest.fixture(scope="module")
def letterboxed(synthetic_clip, tmp_path_factory):
    path = tmp_path_factory.mktemp("letterbox") / "boxed.mp4"
    ffmpeg("-i", str(synthetic_clip.path), "-vf", f"pad=256:{256 + 2 * BAR}:0:{BAR}:black", "-c:a", "copy",
           str(path))
    return path


def test_preprocess_finds_the_bars_warns_and_crop_inside_keeps_frames_off_them(letterboxed, tmp_path, caplog):
    from hm_talker.data.identity import IdentityFrames, load_manifest
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess

    with caplog.at_level(logging.WARNING, logger="hm_talker"):
        preprocess([letterboxed], tmp_path / "plain", PreprocessConfig(size=64, shard_frames=64, crop_scale=3.0))
    clip = json.loads((tmp_path / "plain" / "manifest.json").read_text())["clips"][0]
    np.testing.assert_allclose(clip["picture"], [0, BAR, 256, 256 + BAR], atol=2)  # the pad's geometry
    assert clip["crop_on_bars_max"] > 0.05
    warned = [r.getMessage() for r in caplog.records if "black bars" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("boxed.mp4: the video has black bars")

    preprocess([letterboxed], tmp_path / "inside",
               PreprocessConfig(size=64, shard_frames=64, crop_scale=3.0, crop_inside=True))
    clip = json.loads((tmp_path / "inside" / "manifest.json").read_text())["clips"][0]
    assert clip["crop_on_bars_max"] == 0 and clip["crop_outside_max"] == 0
    top = {}  # per frame, the brightest pixel of the crop's top two rows (0-255)
    for name in ("plain", "inside"):
        stored = IdentityFrames(tmp_path / name, load_manifest(tmp_path / name))
        top[name] = np.array([255 * stored[i]["image"][..., :2, :].max() for i in range(stored.num_frames)])
    assert np.median(top["plain"]) <= 16 < top["inside"].min()  # the black band at the top is gone from every frame
