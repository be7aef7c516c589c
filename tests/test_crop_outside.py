"""Crops that reach past the video's edge: how much of each crop the repeated edge pixels fill (known
geometry), that crop_frame fills exactly that much, and the one warning per clip preprocessing gives."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from hm_talker.preprocess.pipeline import report_crop_outside
from hm_talker.preprocess.track import crop_frame, fit_into_region, outside_fraction


def test_the_share_outside_is_the_boxes_geometry():
    boxes = np.array([[50, 50, 40],    # inside a 100 x 100 frame
                      [50, 100, 40],   # centred on the bottom edge: half outside
                      [0, 0, 40],      # centred on a corner: three quarters outside
                      [50, 90, 40],    # 10 of its 40 rows below the frame
                      [50, 50, 200]])  # larger than the frame: 1 - 100^2 / 200^2
    np.testing.assert_allclose(outside_fraction(boxes, 100, 100), [0.0, 0.5, 0.75, 0.25, 0.75])


def test_crop_frame_fills_exactly_that_share_with_the_edge_row():
    frame = np.repeat(np.arange(100, dtype=np.uint8)[:, None, None], 100, axis=1).repeat(3, axis=2)  # row y = y
    crop = crop_frame(frame, (50, 90, 40), 40)  # rows 70..109 of a frame that ends at 99
    assert outside_fraction(np.array([[50, 90, 40]]), 100, 100)[0] == 0.25
    assert (crop[30:, :, 0] == 99).all() and (crop[:30, 0, 0] == np.arange(70, 100)).all()  # 10 of 40 rows repeated


def test_one_warning_per_clip_that_reaches_out_naming_it(caplog):
    clips = [SimpleNamespace(info=SimpleNamespace(width=100, height=100, path="/videos/tight.mp4")),
             SimpleNamespace(info=SimpleNamespace(width=100, height=100, path="/videos/roomy.mp4"))]
    boxes = np.array([[50, 90, 40]] * 3 + [[50, 50, 40]] * 2 + [[50, 50, 40], [50, 51, 40]], np.float64)
    ids = np.array([0] * 5 + [1] * 2)
    with caplog.at_level(logging.WARNING, logger="hm_talker"):
        worst = report_crop_outside(clips, boxes, ids, 0.05, 2.2)
    assert worst == pytest.approx([0.25, 0.0])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("tight.mp4: up to 25 % of the square crop lies outside")
    assert "on 3 of 5 frames" in warnings[0] and "crop_scale" in warnings[0]


def test_crop_inside_moves_each_box_the_least_into_the_frame():
    boxes = np.array([[50, 90, 40], [50, 50, 40], [5, 95, 40], [50, 50, 200]], np.float64)
    moved = fit_into_region(boxes, (0, 0, 100, 100))
    np.testing.assert_allclose(moved, [[50, 80, 40], [50, 50, 40], [20, 80, 40], [50, 50, 100]])
    assert (outside_fraction(moved, 100, 100) == 0).all()
    wide = fit_into_region(np.array([[10, 50, 80]]), (0, 0, 200, 100))  # a landscape frame: only x moves
    np.testing.assert_allclose(wide, [[40, 50, 80]])


def test_identities_made_before_these_settings_stay_up_to_date():
    """At their defaults the two crop settings change no output, so they must not change an identity's
    fingerprint (else `preprocess` into an identity made before them refuses it, and a resumed run starts over)."""
    import dataclasses
    import hashlib

    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import LATER_FIELDS, fingerprint

    cfg = PreprocessConfig()
    before = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in LATER_FIELDS}  # the older field set
    assert fingerprint([], None, cfg) == hashlib.sha256(repr(sorted(before.items())).encode()).hexdigest()[:16]
    assert fingerprint([], None, PreprocessConfig(crop_inside=True)) != fingerprint([], None, cfg)
