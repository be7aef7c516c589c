"""Every parameter of the default model trains, or is gone: over a few steps of CMMM's stage 1 and of a
fit (mouth warm-up off, both SFP sources), the parameters that get no gradient are listed; only those
frozen by the config (cmmm.freeze) may be among them."""
from __future__ import annotations

import lightning as L
import torch

from conftest import SMALL


def _untrained(named_params, grads: dict) -> list[str]:
    return sorted(n for n, p in named_params if p.requires_grad and p.numel() > 0 and not grads.get(n, False))


def test_stage1_trains_every_cmmm_parameter_it_owns(identity64):
    from datamodules import FeatureWindowDataModule
    from hm_talker.config.cmmm import load_config
    from hm_talker.data.identity import load_manifest
    from hm_talker.training.cmmm_module import cmmm_losses
    from hm_talker.training.stage1 import build_net

    cfg = load_config(None, [f"data.roots=[{identity64}]"])
    k, d = load_manifest(identity64)["features"]["audio"]["shape"]
    cfg.audio.rows_per_frame, cfg.audio.feature_dim = k, d
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_object(cfg)
    net = build_net(cfg)
    dm = FeatureWindowDataModule([str(identity64)], batch_size=16, window=cfg.data.window,
                                 shifts=list(cfg.cmmm.loss.shifts), speech_window=cfg.cmmm.net.speech_window,
                                 formants=True)
    dm.setup()
    grads: dict[str, bool] = {}
    for i, batch in zip(range(3), dm.train_dataloader()):
        net.zero_grad(set_to_none=True)
        cmmm_losses(net, batch, cfg.cmmm.loss)["total"].backward()
        for n, p in net.named_parameters():
            grads[n] = grads.get(n, False) or (p.grad is not None and bool(p.grad.abs().sum() > 0))
    # the AU encoder (AUs -> explicit feature) is HMMM's: stage 1 has no explicit feature to train it on; the
    # formant head is fitted after stage 1's steps, by its own loop (hm_talker/training/formant_head.py)
    untrained = [n for n in _untrained(net.named_parameters(), grads)
                 if not n.startswith(("au_encoder.", "formant_head."))]
    assert untrained == [], untrained
    from hm_talker.training.formant_head import fit_formant_head

    before = {n: p.detach().clone() for n, p in net.formant_head.named_parameters()}
    fit_formant_head(net, [(d.windows, d.num_train) for d in dm.idents], cfg.cmmm.loss.au_weights, seed=0)
    unchanged = [n for n, p in net.formant_head.named_parameters() if torch.equal(p, before[n])]
    assert before and unchanged == [], unchanged


class GradCensus(L.Callback):
    def __init__(self):
        self.grads: dict[str, bool] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        for n, p in pl_module.named_parameters():  # the step's gradients (zeroed at the next step's start)
            self.grads[n] = self.grads.get(n, False) or (p.grad is not None and bool(p.grad.abs().sum() > 0))


def test_fit_trains_every_parameter_not_frozen_by_config(identity64, tmp_path):
    from hm_talker.training.fit import fit

    census = GradCensus()
    fit(None, [f"data.root={identity64}", f"run.dir={tmp_path}", "run.name=census", "trainer.max_steps=4",
               "schedule.mouth_warmup_steps=0", "strategy.enabled=false", "eval.lip_sync=false", *SMALL],
        False, callbacks=[census])
    from hm_talker.driving.checkpoint import load_module

    model, _, _ = load_module(tmp_path / "census" / "checkpoints" / "last.ckpt", device="cpu")
    frozen = {f"cmmm.{n}" for n, _ in model.cmmm.named_parameters() if not n.startswith("au_encoder.")}  # cmmm.freeze
    untrained = [n for n in _untrained(model.named_parameters(), census.grads) if n not in frozen]
    assert untrained == [], untrained
