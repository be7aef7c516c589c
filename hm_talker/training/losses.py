"""The losses of the Gaussian head and the measurements shared with validation: one SSIM, one
PSNR-in-mask, one mask box, one LPIPS-on-crops (TalkingGaussian's photometric terms) and the
regularisers. Pure functions of tensors: the LightningModules only weight and sum them."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def ssim_map(x: Tensor, y: Tensor, window: int, sigma: float = 1.5) -> Tensor:  # [B, 3, H, W] x2 -> same
    """Per-pixel SSIM with a Gaussian window (replicate padding), the usual constants for [0, 1] images."""
    coords = torch.arange(window, dtype=x.dtype, device=x.device) - (window - 1) / 2
    g1 = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g1 = g1 / g1.sum()
    kernel = (g1[:, None] * g1[None, :]).expand(x.shape[1], 1, window, window).contiguous()

    def blur(t):
        return F.conv2d(F.pad(t, [window // 2] * 4, mode="replicate"), kernel, groups=x.shape[1])

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def masked_psnr(pred: Tensor, gt: Tensor, m: Tensor) -> Tensor:  # [B,3,H,W] x2, [B,1,H,W] -> [B] dB
    """PSNR in dB inside the mask (images in [0, 1])."""
    mse = (((pred - gt) ** 2) * m).flatten(1).sum(1) / (m.flatten(1).sum(1) * 3).clamp_min(1.0)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def mask_boxes(mask: Tensor) -> list:  # [B, H, W] -> per frame (y0, y1, x0, x1) or None
    """Bounding box of each frame's mask (None where the mask is empty).

    One device-to-host copy per batch (the boxes index crops, so they are needed on the host)."""
    any_y, any_x = (mask > 0.5).any(2), (mask > 0.5).any(1)  # [B, H], [B, W]
    h, w = mask.shape[1:]
    ar_y = torch.arange(h, device=mask.device)
    ar_x = torch.arange(w, device=mask.device)
    big = h + w
    ys0 = torch.where(any_y, ar_y, big).amin(1)
    ys1 = torch.where(any_y, ar_y, -1).amax(1) + 1
    xs0 = torch.where(any_x, ar_x, big).amin(1)
    xs1 = torch.where(any_x, ar_x, -1).amax(1) + 1
    rows = torch.stack([ys0, ys1, xs0, xs1], 1).tolist()
    return [None if r[1] <= r[0] else tuple(int(v) for v in r) for r in rows]


def random_patches(boxes: list, size: int, seed: int, step: int) -> list:
    """A size x size patch per frame inside its box, drawn from a (seed, step) generator so that
    resumed runs draw the same patches."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    out = []
    for box in boxes:
        if box is None:
            out.append(None)
            continue
        y0, y1, x0, x1 = box
        h, w = min(size, y1 - y0), min(size, x1 - x0)
        py = y0 + int(torch.randint(0, y1 - y0 - h + 1, (1,), generator=gen))
        px = x0 + int(torch.randint(0, x1 - x0 - w + 1, (1,), generator=gen))
        out.append((py, py + h, px, px + w))
    return out


def lpips_boxes(pred: Tensor, gt: Tensor, boxes: list, side: int) -> Tensor:
    """Mean LPIPS (AlexNet) over one box per frame, the crops resized to side x side."""
    from hm_talker.metrics.image import get_lpips_model

    model = get_lpips_model(pred.device)
    vals = []
    for i, box in enumerate(boxes):
        if box is None:
            continue
        y0, y1, x0, x1 = box
        p = F.interpolate(pred[i:i + 1, :, y0:y1, x0:x1], size=(side, side), mode="bilinear", align_corners=False)
        t = F.interpolate(gt[i:i + 1, :, y0:y1, x0:x1], size=(side, side), mode="bilinear", align_corners=False)
        vals.append(model(p * 2 - 1, t * 2 - 1).reshape(()))
    return torch.stack(vals).mean() if vals else pred.new_zeros(())


def render_losses(lc, batch: dict, out: dict, deformed: dict, step: int, seed: int) -> dict[str, Tensor]:
    """TalkingGaussian's terms in the face region: L1 + D-SSIM, LPIPS on the lips and on a random face
    patch (from lc.lpips_start_step), alpha vs face mask, deformation size. `lc` is a LossConfig;
    returns every term and their weighted sum under "total"."""
    pred, gt, m = out["rgb"], batch["image"], out["face_mask"]
    denom = m.sum().clamp_min(1.0) * 3
    l1 = ((pred - gt).abs() * m).sum() / denom
    # SSIM on mask-composited images: outside the region both are the real frame
    ssim = (ssim_map(pred * m + gt * (1 - m), gt, lc.ssim_window) * m).sum() / denom
    alpha = (out["alpha"] - batch["masks"][:, :1].float()).abs().mean()
    fo, mo = deformed["face_out"], deformed["mouth_out"]
    deform = fo.d_xyz.pow(2).mean() + fo.d_scale.pow(2).mean() + mo.d_xyz.pow(2).mean()
    terms = {"l1": l1, "dssim": (1 - ssim) / 2, "alpha": alpha, "deform": deform}
    total = lc.l1 * l1 + lc.dssim * terms["dssim"] + lc.alpha * alpha + lc.deform_size * deform
    if lc.lpips > 0 and step >= lc.lpips_start_step:
        terms["lpips"] = lpips_boxes(pred, gt, mask_boxes(batch["masks"][:, 1]), lc.lpips_crop_size)
        total = total + lc.lpips * terms["lpips"]
    if lc.lpips_patch > 0 and step >= lc.lpips_start_step:
        boxes = random_patches(mask_boxes(batch["masks"][:, 0]), lc.lpips_patch_size, seed, step)
        terms["lpips_patch"] = lpips_boxes(pred, gt, boxes, lc.lpips_crop_size)
        total = total + lc.lpips_patch * terms["lpips_patch"]
    terms["total"] = total
    return terms


def lip_motion_loss(means: Tensor, d_xyz: Tensor, anchors: Tensor, motion: Tensor, radius: float) -> Tensor:
    """Mean squared (x, y) error between the deformation of the face Gaussians near a lower-face landmark
    and that landmark's measured displacement in the frame (our choice: a geometric prior that gives the
    lip motion a direct target on a CPU budget).

    means [N, 3] canonical face centres, d_xyz [B, N, 3] their offsets, anchors [L, 3] the landmarks'
    canonical positions, motion [B, L, 3] their displacements; head units squared."""
    dist, nearest = torch.cdist(means.detach(), anchors).min(1)  # [N], [N]
    near = (dist < radius).to(d_xyz.dtype)  # [N]; weights, not indexing: no host sync
    err = (d_xyz[..., :2] - motion[:, nearest, :2]).pow(2).sum(-1)  # [B, N]
    return (err * near).sum() / (near.sum() * err.shape[0] * 2).clamp_min(1.0)
