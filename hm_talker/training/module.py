"""TalkingHeadModule: person-specific 3D Gaussian head driven by audio (TalkingGaussian-style).

Two sets of canonical Gaussians in the head frame (the mean landmark shape's frame): the face
and the inside of the mouth. Per frame, the audio window gives a condition; the face branch
(condition + upper-face AUs) and the mouth branch (condition) deform their Gaussians; both
are rendered with the frame's camera and composited: mouth, face over it, and the real frame
(outside the face mask) behind both.

Optimisation is manual (one Adam step per training step) because densification changes the
number of Gaussians: each branch is a `GaussianModel` with its own `DensifyStrategy`, which
patches the optimiser's parameters and Adam moments in place; `load_state_dict` resizes the
Gaussian tensors to the checkpoint's N and the strategies' state travels in the checkpoint.
"""
from __future__ import annotations

import math
import random
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hm_talker.constants import AU_MAX, AU_NAMES
from hm_talker.model import AudioEncoder, FaceDeformation, MouthDeformation, apply_deformation
from hm_talker.render import DensifyStrategy, GaussianModel, RenderConfig, rasterize, rgb_to_sh
from hm_talker.training.config import FitConfig
from hm_talker.training.densify import densify_branches, strategy_config

INNER_LIP_IDX = [13, 14, 78, 308]  # MediaPipe inner-lip landmarks (upper, lower, left, right corners)
BRANCHES = ("face", "mouth")
GAUSSIAN_PARAMS = GaussianModel.BASE_PARAMS  # means, quats, log_scales, opacity_logits, sh0, shN
# state_dict keys of older checkpoints (own Gaussian branch class) -> current ones (None: dropped)
LEGACY_KEYS = {"sh_rest": "shN", "grad_accum": None, "grad_count": None}


def knn_scale(points: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:  # [N, 3] -> [N]
    """RMS distance to the k nearest neighbours (3DGS's initial scale: neighbours just overlap)."""
    n = points.shape[0]
    if n <= 1:
        return torch.full((n,), 0.05)
    k = min(k, n - 1)
    out = []
    for i in range(0, n, chunk):
        d2 = torch.cdist(points[i:i + chunk], points).pow(2)  # [c, N]
        nearest = d2.topk(k + 1, largest=False).values[:, 1:]  # drop the point itself
        out.append(nearest.mean(-1).sqrt())
    return torch.cat(out).clamp(1e-4, 1.0)


class GaussianBranch(GaussianModel):
    """Canonical Gaussians of one branch (a `GaussianModel`; its strategy lives in the module)."""

    @classmethod
    def create(cls, means: Tensor, sh_degree: int, scale: float, opacity: float, rgb: Tensor) -> "GaussianBranch":
        n = means.shape[0]
        scales = torch.full((n,), scale) if scale > 0 else knn_scale(means)  # [N]
        return cls.from_points(means, rgb.expand(n, 3), sh_degree=sh_degree, opacity=opacity, scales=scales)

    @property
    def num(self) -> int:
        return self.num_gaussians


class TalkingHeadModule(L.LightningModule):
    def __init__(self, cfg: FitConfig, mean_shape: np.ndarray, config_dict: dict | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        # the checkpoint keeps the config as a plain dict (loads with torch.load(weights_only=True))
        self.config_dict = config_dict or {}
        g = cfg.model.gaussians
        cond_dim = cfg.model.audio.condition_dim
        cfg.model.deformation.face.condition_dim = cond_dim  # both branches read the audio condition
        cfg.model.deformation.mouth.audio_dim = cond_dim
        cfg.model.deformation.face.upper_au_dim = len(cfg.model.upper_aus)
        self.upper_au_idx = [AU_NAMES.index(a) for a in cfg.model.upper_aus]
        self.render_cfg = RenderConfig(backend=cfg.model.render_backend, tile_size=cfg.model.tile_size)

        # Initial Gaussians from the mean landmark shape; a private generator so that the data
        # order / global RNG do not depend on how many Gaussians were drawn.
        gen = torch.Generator().manual_seed(cfg.seed)
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
        # one densification strategy per branch (head units: scene_scale 1); state saved in checkpoints
        self.strategies = {name: DensifyStrategy(strategy_config(cfg.strategy, i), scene_scale=1.0)
                           for i, name in enumerate(BRANCHES)}
        self.register_buffer("colors_initialised", torch.tensor(0))  # 1 once the face colours came from a frame

        self.audio_encoder = AudioEncoder(cfg.model.audio)
        self.face_deform = FaceDeformation.from_config(cfg.model.deformation)
        self.mouth_deform = MouthDeformation.from_config(cfg.model.deformation)
        self.face_deform.fit_aabb(face_means)
        self.mouth_deform.fit_aabb(mouth_means)
        self._val_sums: list[Tensor] = []

    # ------------------------------------------------------------------ checkpoint plumbing
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Any Gaussian count loads (GaussianModel resizes itself); older key names are mapped."""
        state_dict = dict(state_dict)
        for name in BRANCHES:
            for old, new in LEGACY_KEYS.items():
                value = state_dict.pop(f"{name}.{old}", None)
                if value is not None and new is not None:
                    state_dict.setdefault(f"{name}.{new}", value)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lightning does not save RNG states; store them as plain tensors / lists (weights_only-safe).
        np_state = np.random.get_state()
        checkpoint["rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                      int(np_state[3]), float(np_state[4])],
            "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        }
        checkpoint["config"] = self.config_dict
        checkpoint["num_gaussians"] = {name: getattr(self, name).num for name in BRANCHES}
        checkpoint["densify"] = {name: s.state_dict() for name, s in self.strategies.items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._pending_rng = checkpoint.get("rng")
        for name, state in checkpoint.get("densify", {}).items():
            self.strategies[name].load_state_dict(state)

    def on_train_start(self) -> None:
        # Restore RNG last: after Lightning's own setup (which may draw random numbers).
        rng = getattr(self, "_pending_rng", None)
        if rng is None:
            return
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        n = rng["numpy"]
        np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
        p = rng["python"]
        random.setstate((p[0], tuple(p[1]), p[2]))
        self._pending_rng = None

    # ------------------------------------------------------------------ optimiser
    def _param_groups(self) -> list[dict]:
        o = self.cfg.optim
        groups = []
        for name in BRANCHES:
            b: GaussianBranch = getattr(self, name)
            lrs = {"means": o.lr_means, "quats": o.lr_quats, "log_scales": o.lr_scales,
                   "opacity_logits": o.lr_opacities, "sh0": o.lr_colors, "shN": o.lr_colors_rest}
            for key in GAUSSIAN_PARAMS:
                groups.append({"params": [getattr(b, key)], "lr": lrs[key], "name": f"{name}.{key}",
                               "base_lr": lrs[key]})
        nets = {"audio_encoder": self.audio_encoder, "face_deform": self.face_deform,
                "mouth_deform": self.mouth_deform}
        for net_name, net in nets.items():
            grids = [p for n, p in net.named_parameters() if "encoding" in n]
            rest = [p for n, p in net.named_parameters() if "encoding" not in n]
            if grids:
                groups.append({"params": grids, "lr": o.lr_grids, "name": f"{net_name}.grids", "base_lr": o.lr_grids})
            groups.append({"params": rest, "lr": o.lr_networks, "name": f"{net_name}.mlp", "base_lr": o.lr_networks})
        return groups

    def configure_optimizers(self):
        return torch.optim.Adam(self._param_groups(), eps=self.cfg.optim.adam_eps)

    def _set_lrs(self, opt: torch.optim.Optimizer, step: int) -> None:
        """Exponential decays: centres base -> final (3DGS), networks base -> base * decay (per step)."""
        o = self.cfg.optim
        total = max(1, o.decay_steps or self.cfg.trainer.max_steps)
        t = min(1.0, step / total)
        for group in opt.param_groups:
            name = group["name"]
            if name.endswith(".means"):
                group["lr"] = math.exp((1 - t) * math.log(o.lr_means) + t * math.log(o.lr_means_final))
            elif "deform" in name or name.startswith("audio_encoder"):
                group["lr"] = group["base_lr"] * o.network_decay_final ** t

    # ------------------------------------------------------------------ forward
    def deform(self, batch: dict, face_grad: bool = True) -> dict:
        """Deformed Gaussians of both branches for every frame of the batch ([B, N, *])."""
        condition, _ = self.audio_encoder(batch["audio_window"])  # [B, C]
        upper = batch["aus"][:, self.upper_au_idx] / AU_MAX  # [B, Au]
        with torch.set_grad_enabled(face_grad and torch.is_grad_enabled()):
            face_out = self.face_deform(self.face.means, condition, upper)
        mouth_out = self.mouth_deform(self.mouth.means, condition)
        fm, fq, fs = apply_deformation(self.face.means, self.face.quats, self.face.log_scales, face_out)
        mm, mq, ms = apply_deformation(self.mouth.means, self.mouth.quats, self.mouth.log_scales, mouth_out)
        return {"face": (fm, fq, fs), "mouth": (mm, mq, ms), "face_out": face_out, "mouth_out": mouth_out}

    def _render_branch(self, name: str, means: Tensor, quats: Tensor, log_scales: Tensor,
                       viewmat: Tensor, K: Tensor, h: int, w: int):
        b: GaussianBranch = getattr(self, name)
        rgb, alpha, _, meta = rasterize(
            means, quats, log_scales.exp(), b.opacities, b.colors,
            viewmat[None], K[None], w, h, sh_degree=self.cfg.model.gaussians.sh_degree,
            config=self.render_cfg,
        )
        return rgb[0].permute(2, 0, 1), alpha[0].permute(2, 0, 1), meta  # [3, H, W], [1, H, W]

    def render(self, batch: dict, deformed: dict) -> dict:
        """Composite per frame: mouth, face over it, the real frame outside the face mask behind both."""
        image = batch["image"]  # [B, 3, H, W]
        B, _, H, W = image.shape
        face_mask = self.face_region(batch)  # [B, 1, H, W]
        background = image * (1.0 - face_mask)
        outs, alphas, metas = [], [], {"face": [], "mouth": []}
        for i in range(B):
            views = batch["extrinsics"][i].float(), batch["intrinsics"][i].float()
            fm, fq, fs = (t[i] for t in deformed["face"])
            mm, mq, ms = (t[i] for t in deformed["mouth"])
            mouth_rgb, mouth_a, mmeta = self._render_branch("mouth", mm, mq, ms, *views, H, W)
            face_rgb, face_a, fmeta = self._render_branch("face", fm, fq, fs, *views, H, W)
            inner = mouth_rgb + (1.0 - mouth_a) * background[i]  # premultiplied colours
            outs.append(face_rgb + (1.0 - face_a) * inner)
            alphas.append(1.0 - (1.0 - face_a) * (1.0 - mouth_a))
            metas["face"].append(fmeta)
            metas["mouth"].append(mmeta)
        return {"rgb": torch.stack(outs), "alpha": torch.stack(alphas), "metas": metas, "face_mask": face_mask}

    def face_region(self, batch: dict) -> Tensor:  # [B, 1, H, W]
        m = batch["masks"][:, :1].float()
        r = self.cfg.loss.mask_dilate
        return F.max_pool2d(m, 2 * r + 1, stride=1, padding=r) if r > 0 else m

    # ------------------------------------------------------------------ losses
    def _ssim_map(self, x: Tensor, y: Tensor) -> Tensor:  # [B, 3, H, W] x2 -> [B, 3, H, W]
        win = self.cfg.loss.ssim_window
        sigma = 1.5
        coords = torch.arange(win, dtype=x.dtype, device=x.device) - (win - 1) / 2
        g1 = torch.exp(-coords ** 2 / (2 * sigma ** 2))
        g1 = g1 / g1.sum()
        kernel = (g1[:, None] * g1[None, :]).expand(3, 1, win, win).contiguous()

        def blur(t):
            return F.conv2d(F.pad(t, [win // 2] * 4, mode="replicate"), kernel, groups=3)

        mx, my = blur(x), blur(y)
        sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))

    def losses(self, batch: dict, out: dict, deformed: dict, step: int) -> dict[str, Tensor]:
        lc = self.cfg.loss
        pred, gt, m = out["rgb"], batch["image"], out["face_mask"]
        denom = m.sum().clamp_min(1.0) * 3
        l1 = ((pred - gt).abs() * m).sum() / denom
        # SSIM on mask-composited images: outside the region both are the real frame
        ssim = (self._ssim_map(pred * m + gt * (1 - m), gt) * m).sum() / denom
        alpha = (out["alpha"] - batch["masks"][:, :1].float()).abs().mean()
        fo, mo = deformed["face_out"], deformed["mouth_out"]
        deform = fo.d_xyz.pow(2).mean() + fo.d_scale.pow(2).mean() + mo.d_xyz.pow(2).mean()
        terms = {"l1": l1, "dssim": (1 - ssim) / 2, "alpha": alpha, "deform": deform}
        total = lc.l1 * l1 + lc.dssim * terms["dssim"] + lc.alpha * alpha + lc.deform_size * deform
        if lc.lpips > 0 and step >= lc.lpips_start_step:
            terms["lpips"] = self._lpips_boxes(pred, gt, self._mask_boxes(batch["masks"][:, 1]))
            total = total + lc.lpips * terms["lpips"]
        if lc.lpips_patch > 0 and step >= lc.lpips_start_step:
            boxes = self._random_patches(batch["masks"][:, 0], lc.lpips_patch_size, step)
            terms["lpips_patch"] = self._lpips_boxes(pred, gt, boxes)
            total = total + lc.lpips_patch * terms["lpips_patch"]
        terms["total"] = total
        return terms

    @staticmethod
    def _mask_boxes(mask: Tensor) -> list:  # [B, H, W] -> per frame (y0, y1, x0, x1) or None
        """Bounding box of each frame's mask (None where the mask is empty)."""
        boxes = []
        for m in mask:
            ys, xs = torch.nonzero(m > 0.5, as_tuple=True)
            boxes.append(None if ys.numel() == 0 else
                         (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1))
        return boxes

    def _random_patches(self, face: Tensor, size: int, step: int) -> list:
        """A size x size patch per frame inside the face box, drawn from a (seed, step) generator so
        that resumed runs draw the same patches."""
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
        out = []
        for box in self._mask_boxes(face):
            if box is None:
                out.append(None)
                continue
            y0, y1, x0, x1 = box
            h, w = min(size, y1 - y0), min(size, x1 - x0)
            py = y0 + int(torch.randint(0, y1 - y0 - h + 1, (1,), generator=gen))
            px = x0 + int(torch.randint(0, x1 - x0 - w + 1, (1,), generator=gen))
            out.append((py, py + h, px, px + w))
        return out

    def _lpips_boxes(self, pred: Tensor, gt: Tensor, boxes: list) -> Tensor:
        """Mean LPIPS (AlexNet) over one box per frame, crops resized to lpips_crop_size."""
        from hm_talker.metrics.image import get_lpips_model

        model = get_lpips_model(pred.device)
        side = self.cfg.loss.lpips_crop_size
        vals = []
        for i, box in enumerate(boxes):
            if box is None:
                continue
            y0, y1, x0, x1 = box
            p = F.interpolate(pred[i:i + 1, :, y0:y1, x0:x1], size=(side, side), mode="bilinear", align_corners=False)
            t = F.interpolate(gt[i:i + 1, :, y0:y1, x0:x1], size=(side, side), mode="bilinear", align_corners=False)
            vals.append(model(p * 2 - 1, t * 2 - 1).reshape(()))
        return torch.stack(vals).mean() if vals else pred.new_zeros(())

    @staticmethod
    def masked_psnr(pred: Tensor, gt: Tensor, m: Tensor) -> Tensor:  # -> [B] PSNR (dB) inside the mask
        mse = (((pred - gt) ** 2) * m).flatten(1).sum(1) / (m.flatten(1).sum(1) * 3).clamp_min(1.0)
        return -10.0 * torch.log10(mse.clamp_min(1e-10))

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def _init_colors(self, batch: dict) -> None:
        """Colour each face Gaussian with the pixel it projects to in the first training frame."""
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

    def training_step(self, batch: dict, batch_idx: int):
        opt = self.optimizers()
        step = self.global_step
        if self.cfg.model.gaussians.init_colors_from_frame and int(self.colors_initialised) == 0:
            self._init_colors(batch)
        self._set_lrs(opt.optimizer if hasattr(opt, "optimizer") else opt, step)
        face_grad = step >= self.cfg.schedule.mouth_warmup_steps
        deformed = self.deform(batch, face_grad=face_grad)
        out = self.render(batch, deformed)
        terms = self.losses(batch, out, deformed, step)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(terms["total"])
        if not self.cfg.schedule.train_mouth_colors:
            self.mouth.sh0.grad = None
            self.mouth.shN.grad = None
        opt.step()
        self._densify(opt.optimizer if hasattr(opt, "optimizer") else opt, out["metas"], step + 1)

        bsz = batch["image"].shape[0]
        if step % max(1, self.cfg.trainer.log_every) == 0:
            with torch.no_grad():
                psnr = self.masked_psnr(out["rgb"], batch["image"], out["face_mask"]).mean()
            logs = {f"train/{k}": v.detach() for k, v in terms.items()}
            logs["train/psnr"] = psnr
            logs["train/num_face"] = float(self.face.num)
            logs["train/num_mouth"] = float(self.mouth.num)
            self.log_dict(logs, batch_size=bsz, on_step=True, on_epoch=False)
        return terms["total"].detach()

    def validation_step(self, batch: dict, batch_idx: int):
        deformed = self.deform(batch)
        out = self.render(batch, deformed)
        psnr = self.masked_psnr(out["rgb"].clamp(0, 1), batch["image"], out["face_mask"])  # [B]
        self._val_sums.append(torch.stack([psnr.sum(), torch.tensor(float(psnr.numel()))]))
        return {"rgb": out["rgb"].detach()}  # the rendered frames [B, 3, H, W], for callbacks

    def on_validation_epoch_start(self) -> None:
        self._val_sums = []

    def on_validation_epoch_end(self) -> None:
        if not self._val_sums:
            return
        s = torch.stack(self._val_sums).sum(0)
        # mean over val frames (sync_dist: every rank sees the same val frames)
        self.log("psnr_val", s[0] / s[1], sync_dist=True)

    # ------------------------------------------------------------------ densification
    def _densify(self, opt: torch.optim.Optimizer, metas: dict, step: int) -> None:
        """Densification of both branches after the optimiser step (see training/densify.py)."""
        if self.cfg.strategy.enabled:
            densify_branches(self.strategies, {n: getattr(self, n) for n in BRANCHES}, opt, metas, step)
