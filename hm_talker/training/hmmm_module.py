"""HMMMModule: HM-Talker's person-specific model in training, the Hybrid Motion Modeling Module.

The model is `hm_talker.model.talking_head.TalkingHead` (this module is one, plus the loop): the
Gaussian head (model/head.py) driven by a hybrid motion condition, the implicit audio feature and an
explicit AU feature fused by HMMM's gated attention (model/fusion.py). Both features come from CMMM
(model/cmmm.py): its audio encoder gives the implicit feature, its AU encoder turns AUs into the
explicit one. Stochastic Feature Pairing (training/sfp.py) decides per
step which AUs are encoded: the ones measured on the training frame (identity-specific objective)
or the ones CMMM predicts from the audio (identity-agnostic, audio-only objective), so the lower
face is optimised alternately for both. Validation, evaluation and inference always use the
predicted AUs: only audio drives the lower face of a rendered frame.

Optimisation is manual: one Adam step per training step (so global_step counts steps truly) because
densification changes the number of Gaussians (training/densify.py patches the optimiser in place).
"""
from __future__ import annotations

import math
from dataclasses import replace

import lightning as L
import numpy as np
import torch
from torch import Tensor

from hm_talker.constants import LOWER_FACE_LANDMARKS, MEASURED, PREDICTED
from hm_talker.model.head import BRANCHES
from hm_talker.model.talking_head import TalkingHead
from hm_talker.render import DensifyStrategy, GaussianModel, RenderConfig
from hm_talker.render.rasterizer import GSPLAT_ALPHA_MAX, resolve_backend
from hm_talker.training import rng_state
from hm_talker.training.cmmm_module import au_regression
from hm_talker.config.fit import FitConfig
from hm_talker.training.densify import apply_due_resets, densify_branches, strategy_config
from hm_talker.training.losses import lip_motion_loss, masked_psnr, render_losses
from hm_talker.training.sfp import SFPSchedule

GAUSSIAN_PARAMS = GaussianModel.BASE_PARAMS  # means, quats, log_scales, opacity_logits, sh0, shN


class HMMMModule(TalkingHead, L.LightningModule):
    """The TalkingHead in training: SFP's alternating loop, densification, validation."""

    def __init__(self, cfg: FitConfig, mean_shape: np.ndarray, config_dict: dict | None = None,
                 render_cfg: RenderConfig | None = None) -> None:
        # the checkpoint keeps the config as a plain dict (loads with torch.load(weights_only=True))
        super().__init__(cfg, mean_shape, render_cfg, config_dict)
        self.automatic_optimization = False
        # canonical lip / jaw landmarks: the anchors of the landmark-motion loss
        anchors = torch.as_tensor(np.asarray(mean_shape)[LOWER_FACE_LANDMARKS], dtype=torch.float32)
        self.register_buffer("lip_anchors", anchors, persistent=False)
        if cfg.cmmm.freeze:  # the audio -> AU map stays; the AU encoder (explicit feature) is HMMM's to learn
            self.cmmm.requires_grad_(False)
            self.cmmm.au_encoder.requires_grad_(True)
        # one densification strategy per branch (head units: scene_scale 1); state saved in checkpoints
        self.strategies = {name: DensifyStrategy(strategy_config(cfg.strategy, i, cfg.trainer.max_steps), scene_scale=1.0)
                           for i, name in enumerate(BRANCHES)}
        self.sfp = SFPSchedule(replace(cfg.sfp, seed=cfg.sfp.seed + cfg.seed))  # source per step: (seed, step)
        self._val_sums: list[Tensor] = []
        self._colors_done = False
        # SFP since the last logged step: (measured?, share of frames paired with their prediction or None)
        self._sfp_window: list[tuple[bool, Tensor | None]] = []

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.cmmm.freeze:
            self.cmmm.eval()  # a frozen CMMM keeps its dropout off
        return self

    # ------------------------------------------------------------------ checkpoint plumbing
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng"] = rng_state.capture()
        checkpoint["config"] = self.config_dict
        checkpoint["num_gaussians"] = {name: getattr(self, name).num for name in BRANCHES}
        checkpoint["densify"] = {name: s.state_dict() for name, s in self.strategies.items()}
        # what rendered the training frames: inference renders the same way (see inference.load_module)
        backend = resolve_backend(self.head.render_cfg.backend, self.device.type == "cuda")
        checkpoint["render"] = {"backend": backend,
                                "alpha_max": GSPLAT_ALPHA_MAX if backend == "gsplat" else self.head.render_cfg.alpha_max}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._pending_rng = checkpoint.get("rng")
        for name, state in checkpoint.get("densify", {}).items():
            self.strategies[name].load_state_dict(state)

    def on_train_start(self) -> None:
        # Restore RNG last: after Lightning's own setup (which may draw random numbers).
        rng = getattr(self, "_pending_rng", None)
        if rng is not None:
            rng_state.restore(rng)
            self._pending_rng = None

    # ------------------------------------------------------------------ optimiser
    def _param_groups(self) -> list[dict]:
        o = self.cfg.optim
        groups = []
        lrs = {"means": o.lr_means, "quats": o.lr_quats, "log_scales": o.lr_scales,
               "opacity_logits": o.lr_opacities, "sh0": o.lr_colors, "shN": o.lr_colors_rest}
        for name in BRANCHES:
            b = getattr(self, name)
            for key in GAUSSIAN_PARAMS:
                groups.append({"params": [getattr(b, key)], "lr": lrs[key], "name": f"{name}.{key}",
                               "base_lr": lrs[key]})
        for net_name, net in {"face_deform": self.head.face_deform, "mouth_deform": self.head.mouth_deform}.items():
            grids = [p for n, p in net.named_parameters() if "encoding" in n]
            rest = [p for n, p in net.named_parameters() if "encoding" not in n]
            groups.append({"params": grids, "lr": o.lr_grids, "name": f"{net_name}.grids", "base_lr": o.lr_grids})
            groups.append({"params": rest, "lr": o.lr_networks, "name": f"{net_name}.mlp", "base_lr": o.lr_networks})
        cmmm = [p for p in self.cmmm.parameters() if p.requires_grad]  # all, or the AU encoder when frozen
        groups.append({"params": cmmm, "lr": self.cfg.cmmm.lr, "name": "cmmm", "base_lr": self.cfg.cmmm.lr})
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
            elif "deform" in name or name == "cmmm":
                group["lr"] = group["base_lr"] * o.network_decay_final ** t

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int):
        opt = self.optimizers()
        torch_opt = opt.optimizer if hasattr(opt, "optimizer") else opt
        step = self.global_step
        if self.cfg.strategy.enabled:
            apply_due_resets(self.strategies, self.head.branches(), torch_opt)  # scheduled after the last step
        if self.cfg.model.gaussians.init_colors_from_frame and not self._colors_done:
            # the buffer is read once (a GPU sync); afterwards a Python flag answers
            self._colors_done = bool(self.head.colors_initialised)
            if not self._colors_done:
                self.head.init_colors(batch)
                self._colors_done = True
        self._set_lrs(torch_opt, step)
        source = self.last_source = self.sfp.source(step)  # SFP: the explicit source of this step
        face_grad = step >= self.cfg.schedule.mouth_warmup_steps
        if source == PREDICTED and self.cfg.sfp.predicted_implicit == "silent":
            # the audio reaches these steps only through CMMM's predicted AUs: they cannot learn to lean on the
            # training speaker's own voice (the implicit feature), which another speaker's speech does not carry
            batch = {**batch, "silent_implicit": True}
        if source == PREDICTED and self.cfg.sfp.predicted_share < 1.0:
            batch = {**batch, "predicted_share": self.cfg.sfp.predicted_share}  # measured + share x error
        if source == PREDICTED and self.cfg.sfp.predicted_max_error > 0:
            batch = {**batch, "predicted_max_error": self.cfg.sfp.predicted_max_error}  # far predictions stay measured
        if source == PREDICTED and not self.cfg.sfp.predicted_explicit_grad:
            batch = {**batch, "hold_explicit": True}  # the AU encoder and explicit gates learn on measured steps only
        deformed = self.deform(batch, source=source, face_grad=face_grad)
        kept = deformed["conditions"].get("predicted_kept")
        self._sfp_window.append((source == MEASURED, None if kept is None else kept.detach()))
        out = self.render(batch, deformed)
        terms = render_losses(self.cfg.loss, batch, out, deformed, step, self.cfg.seed)
        if self.cfg.loss.lip_motion > 0 and "lip_motion" in batch:
            terms["lip_motion"] = lip_motion_loss(self.face.means, deformed["face_out"].d_xyz, self.lip_anchors,
                                                  batch["lip_motion"], self.cfg.loss.lip_motion_radius)
            terms["total"] = terms["total"] + self.lip_motion_weight(source) * terms["lip_motion"]
        if not self.cfg.cmmm.freeze and self.cfg.cmmm.au_loss > 0:
            weights = torch.as_tensor(self.cfg.cmmm.loss.au_weights, dtype=batch["aus"].dtype, device=self.device)
            terms["cmmm_au"] = au_regression(deformed["conditions"]["raw_aus"], batch["aus"], weights)
            terms["total"] = terms["total"] + self.cfg.cmmm.au_loss * terms["cmmm_au"]
        opt.zero_grad(set_to_none=True)
        self.manual_backward(terms["total"])
        if not self.cfg.schedule.train_mouth_colors:
            self.mouth.sh0.grad = None
            self.mouth.shN.grad = None
        opt.step()
        if self.cfg.strategy.enabled:
            densify_branches(self.strategies, self.head.branches(), torch_opt, out["metas"], step + 1)

        if step % max(1, self.cfg.trainer.log_every) == 0:
            self._log_step(batch, out, deformed, terms, source)
        return terms["total"].detach()

    def lip_motion_weight(self, source: str) -> float:
        """Weight of the landmark-motion loss on a step paired with `source` (sfp.predicted_lip_motion scales it
        on predicted-AU steps)."""
        return self.cfg.loss.lip_motion * (self.cfg.sfp.predicted_lip_motion if source == PREDICTED else 1.0)

    def _log_step(self, batch: dict, out: dict, deformed: dict, terms: dict, source: str) -> None:
        with torch.no_grad():
            psnr = masked_psnr(out["rgb"], batch["image"], out["face_mask"]).mean()
        logs = {f"train/{k}": v.detach() for k, v in terms.items()}
        logs["train/psnr"] = psnr
        # SFP over the steps since the last log (a log every 10 steps of a period-2 cycle would see measured steps
        # only): the share paired with measured AUs, and under sfp.predicted_max_error the share of the predicted
        # steps' frames paired with their prediction
        window, self._sfp_window = self._sfp_window, []  # training_step appended this step before logging
        logs["train/objective_measured"] = sum(m for m, _ in window) / len(window)
        kept = [k for _, k in window if k is not None]
        if kept:
            logs["train/predicted_kept"] = torch.stack(kept).mean()
        logs["train/num_face"] = float(self.face.num)
        logs["train/num_mouth"] = float(self.mouth.num)
        for branch in ("face", "mouth"):
            gates = deformed[f"{branch}_out"].fusion_gates or {}
            for k in ("implicit", "explicit"):
                if k in gates:
                    logs[f"gates/{branch}_{k}"] = gates[k].detach().mean()
        self.log_dict(logs, batch_size=batch["image"].shape[0], on_step=True, on_epoch=False)

    def validation_step(self, batch: dict, batch_idx: int):
        deformed = self.deform(batch)  # predicted AUs: the lower face follows the audio only
        out = self.render(batch, deformed)
        psnr = masked_psnr(out["rgb"].clamp(0, 1), batch["image"], out["face_mask"])  # [B]
        self._val_sums.append(torch.stack([psnr.sum(), psnr.new_tensor(float(psnr.numel()))]))
        return {"rgb": out["rgb"].detach()}  # the rendered frames [B, 3, H, W], for callbacks

    def on_validation_epoch_start(self) -> None:
        self._val_sums = []

    def on_validation_epoch_end(self) -> None:
        if not self._val_sums:
            return
        s = torch.stack(self._val_sums).sum(0)
        # mean over val frames (sync_dist: every rank sees the same val frames)
        self.log("psnr_val", s[0] / s[1], sync_dist=True)

