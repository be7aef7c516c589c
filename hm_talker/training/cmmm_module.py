"""CMMMModule: stage 1 of HM-Talker, the Cross-Modal Mapping Module trained on its own.

Learns, from audio alone, the 17 AUs measured on the video (weighted regression) and an audio/AU
alignment (InfoNCE: the audio window of frame t must score higher against the AU window of t than
the audio windows of t + s for the shifts s, so the predicted motion is in sync, not just plausible).
Identity-agnostic: train it on as many people as you have; an identity's fit loads it (`cmmm.ckpt=`).

Validation logs the AU mean absolute error (lower / upper face, intensity units), the Pearson r of
the mouth AUs (AU25, AU26), and sync retrieval accuracy: the share of frames whose true offset ranks
first among the shifted windows (chance = 1 / (1 + number of shifts)).
"""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from hm_talker.constants import AU_NAMES, LOWER_AU_IDX, UPPER_AU_IDX
from hm_talker.config.cmmm import CMMMLossConfig
from hm_talker.metrics.correlation import pearson
from hm_talker.model.cmmm import CMMM

MOUTH_AU_IDX = [AU_NAMES.index("AU25"), AU_NAMES.index("AU26")]


def au_regression(pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:  # [B, 17] x2, [17] -> []
    """Weighted mean squared error of AU intensities (weights normalised to sum 1)."""
    return (((pred - target) ** 2).mean(0) * weights).sum() / weights.sum().clamp_min(1e-9)


def alignment_logits(net: CMMM, span_frames: Tensor, shifts: list[int], aus_window: Tensor,
                     temperature: float) -> Tensor:  # -> [B, 1 + S], column 0 = the true offset
    """Scores of the AU window against the true audio window (column 0) and the windows shifted by
    `shifts`, all cut from the encoded span [B, W + 2M, C] (M = max |shift|)."""
    w = aus_window.shape[1]
    m = (span_frames.shape[1] - w) // 2
    v = net.visual_embedding(aus_window)  # [B, e]
    a = torch.stack([net.audio_embedding(span_frames[:, m + s:m + s + w]) for s in [0, *shifts]], 1)  # [B, 1+S, e]
    return torch.einsum("bse,be->bs", a, v) / temperature


def cmmm_losses(net: CMMM, batch: dict, lc: CMMMLossConfig) -> dict[str, Tensor]:
    """AU regression + alignment on one batch of feature windows; 'total' is the weighted sum."""
    span = batch.get("audio_span")
    use_align = lc.align > 0 and span is not None and len(lc.shifts) > 0
    if use_align:  # encode the span once; the window of frame t is its centre
        span_frames = net.audio.encode_frames_any(net.normalise(span))  # [B, W + 2M, C]
        w = batch["audio_window"].shape[1]
        m = (span.shape[1] - w) // 2
        out = net.from_frames(span_frames[:, m:m + w], batch.get("speech_window"))
    else:
        out = net(batch["audio_window"], batch.get("speech_window"))
    weights = torch.as_tensor(lc.au_weights, dtype=out["aus"].dtype, device=out["aus"].device)
    terms = {"au": au_regression(out["raw_aus"], batch["aus"], weights)}  # the predictor itself, uncalibrated
    total = lc.au * terms["au"]
    if lc.speech_l2 > 0 and net.speech_head is not None:
        terms["speech_l2"] = sum(p.pow(2).sum() for n, p in net.speech_head.named_parameters() if n.endswith("weight"))
        total = total + lc.speech_l2 * terms["speech_l2"]
    if use_align:
        b = span.shape[0]
        logits = alignment_logits(net, span_frames, list(lc.shifts), batch["aus_window"], lc.temperature)
        terms["align"] = F.cross_entropy(logits, torch.zeros(b, dtype=torch.long, device=logits.device))
        terms["sync_acc"] = (logits.argmax(1) == 0).float().mean().detach()
        total = total + lc.align * terms["align"]
    terms["total"] = total
    return {**terms, "pred_aus": out["raw_aus"].detach()}


class CMMMModule(L.LightningModule):
    def __init__(self, net: CMMM, loss_cfg: CMMMLossConfig, lr: float, weight_decay: float,
                 config_dict: dict | None = None) -> None:
        super().__init__()
        self.net, self.lc, self.lr, self.weight_decay = net, loss_cfg, lr, weight_decay
        self.config_dict = config_dict or {}
        self._val: list[dict] = []

    def configure_optimizers(self):
        return torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        terms = cmmm_losses(self.net, batch, self.lc)
        self.log_dict({f"cmmm/train_{k}": v.detach() for k, v in terms.items() if v.ndim == 0},
                      batch_size=batch["aus"].shape[0], on_step=True, on_epoch=False)
        return terms["total"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        terms = cmmm_losses(self.net, batch, self.lc)
        self._val.append({"pred": terms["pred_aus"], "true": batch["aus"],
                          "sync": terms.get("sync_acc", torch.tensor(float("nan"))), "n": batch["aus"].shape[0]})

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        for k, v in self.val_metrics().items():
            self.log(f"cmmm/{k}", v)

    def val_metrics(self) -> dict[str, float]:
        """AU MAE (lower, upper face), mouth-AU Pearson r and sync retrieval accuracy of the last validation."""
        pred = torch.cat([v["pred"] for v in self._val])
        true = torch.cat([v["true"] for v in self._val])
        err = (pred - true).abs().mean(0)  # [17]
        n = torch.tensor([float(v["n"]) for v in self._val])
        sync = torch.stack([v["sync"].float().cpu() for v in self._val])
        return {"au_mae_lower": float(err[LOWER_AU_IDX].mean()), "au_mae_upper": float(err[UPPER_AU_IDX].mean()),
                "mouth_au_r": sum(pearson(pred[:, i].cpu().numpy(), true[:, i].cpu().numpy()) or 0.0 for i in MOUTH_AU_IDX)
                / len(MOUTH_AU_IDX),  # a constant prediction counts as 0
                "mean_predictor_mae_lower": float((true - true.mean(0)).abs().mean(0)[LOWER_AU_IDX].mean()),
                "sync_acc": float((sync * n).sum() / n.sum()),
                "sync_chance": 1.0 / (1 + len(self.lc.shifts))}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["config"] = self.config_dict
        checkpoint["kind"] = "cmmm"
