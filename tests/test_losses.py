"""Losses with known answers: the landmark-motion loss, the mask boxes, SSIM of identical images."""
import torch

from hm_talker.training.losses import lip_motion_loss, mask_boxes, masked_psnr, ssim_map


def test_lip_motion_loss_is_zero_when_gaussians_follow_their_landmark_and_ignores_far_ones():
    anchors = torch.tensor([[0.0, 0.3, 0.0], [0.2, 0.4, 0.0]])  # two landmarks
    means = torch.tensor([[0.01, 0.3, 0.0], [0.2, 0.41, 0.0], [0.0, -0.5, 0.0]])  # the third is far away
    motion = torch.tensor([[[0.0, 0.05, 0.0], [0.0, 0.1, 0.0]]])  # [B=1, L, 3]
    follow = torch.zeros(1, 3, 3)
    follow[0, 0, 1], follow[0, 1, 1], follow[0, 2, 1] = 0.05, 0.1, 7.0  # the far one may do anything
    assert lip_motion_loss(means, follow, anchors, motion, radius=0.06) == 0
    still = torch.zeros(1, 3, 3)
    # two near Gaussians x (x, y): (0.05^2 + 0.1^2) / 4
    assert torch.isclose(lip_motion_loss(means, still, anchors, motion, 0.06), torch.tensor((0.05 ** 2 + 0.1 ** 2) / 4))
    assert lip_motion_loss(means, still, anchors, motion, radius=1e-4) == 0  # nothing near: no loss


def test_mask_boxes_psnr_and_ssim_known_values():
    m = torch.zeros(2, 8, 8)
    m[0, 2:5, 3:7] = 1
    assert mask_boxes(m) == [(2, 5, 3, 7), None]
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(ssim_map(x, x, 7), torch.ones_like(x), atol=1e-4)
    ones = torch.ones(1, 1, 8, 8)
    assert torch.isclose(masked_psnr(x, x + 0.1, ones), torch.tensor([20.0]), atol=1e-3)  # MSE 0.01 -> 20 dB
