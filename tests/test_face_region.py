"""The rendered region (model.face_region=pose): the identity's face outline under each frame's head pose.
It must match the synthetic talker's real face (its face mask, an independent truth drawn by the clip
generator's landmarks) and must not move with the frame's own mouth, image or mask (the scored frame's
jaw cannot shape what is rendered)."""
from __future__ import annotations

import torch


def _batch(identity64):
    from hm_talker.data.identity import IdentityFrames, load_manifest

    m = load_manifest(identity64)
    clip = IdentityFrames(identity64, m)
    samples = [clip[i] for i in range(0, m["num_frames"], 5)]
    return {k: torch.stack([s[k] for s in samples]) for k in ("image", "masks", "extrinsics", "intrinsics")}


def test_pose_region_matches_the_face_and_ignores_the_frames_mouth(trained_ckpt, identity64):
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.model.head import face_region

    model, _, _ = load_module(trained_ckpt, device="cpu")
    batch = _batch(identity64)
    pose = model.head.pose_region(batch, 0)[:, 0] > 0
    frame = face_region(batch["masks"], 0)[:, 0] > 0
    inter, union = (pose & frame).sum((1, 2)).float(), (pose | frame).sum((1, 2)).float()
    iou = inter / union
    assert iou.min() > 0.75, iou  # the outline is the face, in every frame
    assert (inter / frame.sum((1, 2))).min() > 0.85  # and covers it (chin room for the open jaw)
    # another frame's image and mask (another mouth) under the same pose: the same region, pixel for pixel
    other = {**batch, "image": batch["image"].flip(0), "masks": batch["masks"].flip(0)}
    assert torch.equal(model.head.pose_region(other, 2), model.head.pose_region(batch, 2))
    # a head pose that moves: the region moves with it (its centre follows the projected nose)
    shifted = {**batch, "intrinsics": batch["intrinsics"].clone()}
    shifted["intrinsics"][:, 0, 2] += 6.0  # principal point 6 px right
    cx = lambda r: (r[:, 0].float() * torch.arange(r.shape[-1])).sum((1, 2)) / r[:, 0].float().sum((1, 2))  # noqa: E731
    moved = cx(model.head.pose_region(shifted, 0)) - cx(model.head.pose_region(batch, 0))
    assert torch.allclose(moved, torch.full_like(moved, 6.0), atol=1.0), moved


def test_polygon_mask_fills_a_known_square():
    from hm_talker.model.head import polygon_mask

    square = torch.tensor([[[2.0, 3.0], [10.0, 3.0], [10.0, 9.0], [2.0, 9.0]]])
    m = polygon_mask(square, 12, 14)[0, 0]
    assert m.sum().item() == 8 * 6  # pixel centres x in 2.5..9.5, y in 3.5..8.5
    assert m[3, 2] == 1 and m[8, 9] == 1 and m[2, 5] == 0 and m[5, 10] == 0
