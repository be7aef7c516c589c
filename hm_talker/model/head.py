"""The person-specific Gaussian head: two branches of canonical Gaussians, their deformation, and the
composite (TalkingGaussian-style). Networks and rendering only; the training loop is in
hm_talker/training/hmmm_module.py.

Two sets of canonical Gaussians live in the head frame (the mean landmark shape's frame, eye
distance 1): the face and the inside of the mouth. Per frame a motion condition deforms both (the
face branch also reads the upper-face AUs for eyes and brows), both are rendered with the frame's
camera and composited: mouth, face over it, inside the rendered region; the real frame outside it.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hm_talker.constants import FACE_OVAL, LM
from hm_talker.model.config import DeformationConfig, GaussianConfig, HMMMConfig
from hm_talker.model.deformation import FaceDeformation, MouthDeformation, apply_deformation
from hm_talker.render import GaussianModel, RenderConfig, rasterize, rgb_to_sh
from hm_talker.render.rasterizer import resolve_backend

INNER_LIP_IDX = [13, 14, 78, 308]  # MediaPipe inner-lip landmarks (upper, lower, left, right corners)
BRANCHES = ("face", "mouth")


def dilate(mask: Tensor, radius: int) -> Tensor:  # [B, 1, H, W] -> same
    return F.max_pool2d(mask, 2 * radius + 1, stride=1, padding=radius) if radius > 0 else mask


def face_region(masks: Tensor, radius: int) -> Tensor:  # [B, 3, H, W] masks -> [B, 1, H, W]
    """The frame's own face mask dilated by `radius` pixels (model.face_region=frame: the old region, which
    follows the frame's real jaw: see pose_region)."""
    return dilate(masks[:, :1].float(), radius)


def polygon_mask(poly: Tensor, h: int, w: int) -> Tensor:  # [B, P, 2] pixel (x, y), in order -> [B, 1, H, W]
    """1 where a pixel centre lies inside the closed polygon (crossing number), else 0."""
    ys = torch.arange(h, device=poly.device, dtype=poly.dtype) + 0.5
    xs = torch.arange(w, device=poly.device, dtype=poly.dtype) + 0.5
    x0, y0 = poly[..., 0, None], poly[..., 1, None]  # [B, P, 1]
    nxt = poly.roll(-1, dims=1)
    x1, y1 = nxt[..., 0, None], nxt[..., 1, None]
    spans = (y0 <= ys) != (y1 <= ys)  # [B, P, H]: the edge crosses this row
    xc = x0 + (ys - y0) * (x1 - x0) / torch.where((y1 - y0).abs() < 1e-9, torch.full_like(y1, 1e-9), y1 - y0)
    crossings = (spans.unsqueeze(-1) & (xs < xc.unsqueeze(-1))).sum(1)  # [B, H, W]: crossings to the right
    return (crossings % 2 == 1).float().unsqueeze(1)


class GaussianBranch(GaussianModel):
    """Canonical Gaussians of one branch (a `GaussianModel`; its densification strategy lives in training)."""

    @classmethod
    def create(cls, means: Tensor, sh_degree: int, scale: float, opacity: float, rgb: Tensor) -> "GaussianBranch":
        n = means.shape[0]
        scales = torch.full((n,), scale) if scale > 0 else None  # None: mean distance to the 3 nearest (3DGS)
        return cls.from_points(means, rgb.expand(n, 3), sh_degree=sh_degree, opacity=opacity, scales=scales)

    @property
    def num(self) -> int:
        return self.num_gaussians


class GaussianHead(nn.Module):
    """Face + mouth Gaussians, their deformation fields (fused with HMMM's gates) and the composite."""

    def __init__(self, g: GaussianConfig, deformation: DeformationConfig, hmmm: HMMMConfig,
                 mean_shape: np.ndarray, seed: int, render_cfg: RenderConfig, upper_au_reach: float = 0.5,
                 upper_au_edge: float = 0.05, face_region_chin: float = 0.25) -> None:
        super().__init__()
        self.sh_degree, self.render_cfg = g.sh_degree, render_cfg
        # Initial Gaussians from the mean landmark shape; a private generator so that the data
        # order / global RNG do not depend on how many Gaussians were drawn.
        gen = torch.Generator().manual_seed(seed)
        shape = torch.as_tensor(np.asarray(mean_shape), dtype=torch.float32)  # [478, 3]
        pick = torch.randint(0, shape.shape[0], (g.num_face,), generator=gen)
        face_means = shape[pick] + g.init_jitter * torch.randn(g.num_face, 3, generator=gen)
        lips = shape[INNER_LIP_IDX]  # [4, 3]
        centre = lips.mean(0) + torch.tensor([0.0, 0.0, g.mouth_depth])
        half_width = (lips[3, 0] - lips[2, 0]).abs() / 2
        spread = torch.tensor([max(float(half_width), g.mouth_spread), g.mouth_spread, g.mouth_spread / 2])
        mouth_means = centre + spread * torch.randn(g.num_mouth, 3, generator=gen) * 0.5
        self.face = GaussianBranch.create(face_means, g.sh_degree, g.init_scale, g.init_opacity, torch.tensor([0.5] * 3))
        self.mouth = GaussianBranch.create(mouth_means, g.sh_degree, g.init_scale, g.init_opacity,
                                           torch.tensor([0.15] * 3))
        self.register_buffer("colors_initialised", torch.tensor(0))  # 1 once the face colours came from a frame
        fusion = None if hmmm.mode == "implicit" else hmmm  # HMMMConfig is a FusionConfig
        self.face_deform = FaceDeformation.from_config(deformation, fusion)
        self.mouth_deform = MouthDeformation.from_config(deformation, fusion)
        self.face_deform.fit_aabb(face_means)
        self.mouth_deform.fit_aabb(mouth_means)
        # where the eye/brow AUs may act: above a line between the eyes (0) and the nose tip (1), head frame y down
        eye_y = float((shape[LM["r_eye_outer"], 1] + shape[LM["l_eye_outer"], 1]) / 2)
        self.au_limit = eye_y + upper_au_reach * (float(shape[LM["nose_tip"], 1]) - eye_y)
        self.au_edge = max(upper_au_edge, 1e-4)
        # the rendered region's outline in the head frame: the mean shape's face oval with the part below the
        # nose tip stretched down by face_region_chin (room for the open jaw); projected per frame by its pose
        oval = shape[FACE_OVAL].clone()
        below = oval[:, 1] > shape[LM["nose_tip"], 1]
        oval[below, 1] = shape[LM["nose_tip"], 1] + (oval[below, 1] - shape[LM["nose_tip"], 1]) * (1 + face_region_chin)
        self.register_buffer("region_outline", oval, persistent=False)  # [P, 3]

    def branches(self) -> dict[str, GaussianBranch]:
        return {"face": self.face, "mouth": self.mouth}

    @contextlib.contextmanager
    def explicit_held(self, held: bool = True):
        """Inside: the fusions' explicit gates pass no gradient (sfp.predicted_explicit_grad=false on a
        predicted-AU step), so what the step teaches cannot lower how much the field listens to the AUs."""
        fusions = [f.fusion for f in (self.face_deform, self.mouth_deform) if f.fusion is not None]
        before = [f.hold_explicit for f in fusions]
        for f in fusions:
            f.hold_explicit = held
        try:
            yield
        finally:
            for f, b in zip(fusions, before):
                f.hold_explicit = b

    def deform(self, implicit: Tensor, explicit: Tensor | None, upper_aus: Tensor, face_grad: bool = True) -> dict:
        """Deformed Gaussians of both branches for every frame ([B, N, *]).

        implicit [B, C] (audio), explicit [B, C] (AU feature) or None, upper_aus [B, Au] in [0, 1]."""
        with torch.set_grad_enabled(face_grad and torch.is_grad_enabled()):
            face_out = self.face_deform(self.face.means, implicit, upper_aus, explicit=explicit,
                                        au_region=self.upper_au_region())
        mouth_out = self.mouth_deform(self.mouth.means, implicit, explicit=explicit)
        fm, fq, fs = apply_deformation(self.face.means, self.face.quats, self.face.log_scales, face_out)
        mm, mq, ms = apply_deformation(self.mouth.means, self.mouth.quats, self.mouth.log_scales, mouth_out)
        return {"face": (fm, fq, fs), "mouth": (mm, mq, ms), "face_out": face_out, "mouth_out": mouth_out}

    def upper_au_region(self) -> Tensor:  # [N] in (0, 1)
        """Where the eye/brow AUs may move face Gaussians: 1 above the limit (eyes, brows, forehead), 0 below
        it (nose, cheeks, lips, jaw), a soft edge between: the mouth follows the audio alone."""
        return torch.sigmoid((self.au_limit - self.face.means[:, 1].detach()) / self.au_edge)

    def pose_region(self, batch: dict, radius: int) -> Tensor:  # -> [B, 1, H, W]
        """Where the head is rendered: the identity's face outline (mean shape, chin stretched for the jaw) under
        the frame's head pose only, dilated by `radius` pixels. It depends on no expression, so the frame's real
        mouth and jaw (the held-out frame scored, or the training frame replayed by `infer`) never shape it."""
        E, K = batch["extrinsics"].float(), batch["intrinsics"].float()  # [B, 4, 4], [B, 3, 3]
        cam = self.region_outline @ E[:, :3, :3].transpose(1, 2) + E[:, None, :3, 3]  # [B, P, 3]
        uv = cam @ K.transpose(1, 2)
        uv = uv[..., :2] / uv[..., 2:].clamp_min(1e-6)
        return dilate(polygon_mask(uv, *batch["image"].shape[-2:]), radius)

    def _render_branch(self, name: str, means: Tensor, quats: Tensor, log_scales: Tensor,
                       viewmats: Tensor, Ks: Tensor, h: int, w: int):
        """One branch, every frame: [B, N, *] Gaussians and [B] cameras -> rgb [B, 3, H, W], alpha [B, 1, H, W]."""
        b: GaussianBranch = getattr(self, name)
        if resolve_backend(self.render_cfg.backend, means.is_cuda) == "gsplat":  # all frames in one call
            from hm_talker.render.rasterize_gsplat import rasterize_gsplat_frames

            c = self.render_cfg
            rgb, alpha, meta = rasterize_gsplat_frames(
                means, quats, log_scales.exp(), b.opacities, b.colors, viewmats, Ks, w, h, sh_degree=self.sh_degree,
                tile_size=c.tile_size, near_plane=c.near_plane, far_plane=c.far_plane, eps2d=c.eps2d)
            return rgb.permute(0, 3, 1, 2), alpha.permute(0, 3, 1, 2), [meta]
        rgbs, alphas, metas = [], [], []
        for i in range(means.shape[0]):  # one camera per frame: each frame has its own deformed Gaussians
            rgb, alpha, _, meta = rasterize(means[i], quats[i], log_scales[i].exp(), b.opacities, b.colors,
                                            viewmats[i:i + 1], Ks[i:i + 1], w, h, sh_degree=self.sh_degree,
                                            config=self.render_cfg)
            rgbs.append(rgb[0].permute(2, 0, 1))
            alphas.append(alpha[0].permute(2, 0, 1))
            metas.append(meta)
        return torch.stack(rgbs), torch.stack(alphas), metas

    def render(self, batch: dict, deformed: dict, face_mask: Tensor) -> dict:
        """Composite per frame: inside `face_mask` [B, 1, H, W] the face over the mouth over black (the Gaussians
        alone cover the region), outside it the real frame. The Gaussians draw inside the region only: the losses
        score the region (render_losses), so what they spill over its edge is untrained, and a jaw that the
        audio moves further than any training frame did drew a bright line along the neck there."""
        image = batch["image"]  # [B, 3, H, W]
        H, W = image.shape[-2:]
        views = batch["extrinsics"].float(), batch["intrinsics"].float()
        mouth_rgb, mouth_a, mmeta = self._render_branch("mouth", *deformed["mouth"], *views, H, W)
        face_rgb, face_a, fmeta = self._render_branch("face", *deformed["face"], *views, H, W)
        head = face_rgb + (1.0 - face_a) * mouth_rgb  # premultiplied colours
        return {"rgb": face_mask * head + (1.0 - face_mask) * image, "alpha": 1.0 - (1.0 - face_a) * (1.0 - mouth_a),
                "metas": {"face": fmeta, "mouth": mmeta}, "face_mask": face_mask}

    @torch.no_grad()
    def init_colors(self, batch: dict) -> None:
        """Colour each face Gaussian with the pixel it projects to in the batch's first frame."""
        E, K, img = batch["extrinsics"][0].float(), batch["intrinsics"][0].float(), batch["image"][0]
        cam = self.face.means @ E[:3, :3].T + E[:3, 3]  # [N, 3]
        uv = cam @ K.T
        uv = uv[:, :2] / uv[:, 2:].clamp_min(1e-6)  # [N, 2] pixels
        H, W = img.shape[-2:]
        grid = torch.stack([uv[:, 0] / W * 2 - 1, uv[:, 1] / H * 2 - 1], -1)  # pixel-centre convention
        rgb = F.grid_sample(img[None], grid[None, None], align_corners=False, padding_mode="border")[0, :, 0].T
        self.face.sh0.copy_(rgb_to_sh(rgb.clamp(0.02, 0.98)).unsqueeze(1))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # every rank saw a different first batch: take rank 0's colours, or the replicas diverge
            # (DDP only averages gradients, it never re-syncs parameters)
            torch.distributed.broadcast(self.face.sh0.data, src=0)
        self.colors_initialised.fill_(1)
