"""Fitting CMMM's formant head after stage 1 (hm_talker/model/cmmm.py, FormantHead).

The head is a few small MLPs on the standardised speech window (energy, flux, formants) regressing the
measured AUs in z-units, fitted briefly on stage 1's training frames with the recipe of
benchmarks/bench_speaker_head.py (a few epochs, AdamW, dropout): trained for thousands of stage-1 steps it
would learn the training speakers' syllables by heart. The linear head's predictions over the same frames
fix the z-units the two heads are blended in.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger("hm_talker")
BATCH = 256  # frames per forward pass when collecting windows and the linear head's predictions


def training_windows(parts) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """parts: [(Windows, num_train)] of every stage-1 identity -> (audio windows, speech windows, AUs) of
    all their training frames."""
    audio, speech, aus = [], [], []
    for windows, n in parts:
        for k0 in range(0, n, BATCH):
            b = windows.speech_batch(range(k0, min(n, k0 + BATCH)))
            audio.append(b["audio_window"])
            speech.append(b["speech_window"])
        aus.append(torch.from_numpy(windows.aus[:n].astype(np.float32)))
    return torch.cat(audio), torch.cat(speech), torch.cat(aus)


def fit_formant_head(net, parts, au_weights, seed: int) -> dict:
    """Fit `net.formant_head` on the training frames of `parts` ([(Windows, num_train)]); returns its final
    training loss and the correlation of its blended mouth prediction with the measured one there."""
    head, cfg = net.formant_head, net.cfg
    device = next(net.parameters()).device
    audio, speech, aus = training_windows(parts)
    was_training = net.training

    @torch.no_grad()
    def predict() -> torch.Tensor:  # CMMM's raw AUs of every training frame, dropout off
        net.eval()
        out = torch.cat([net(audio[k:k + BATCH].to(device), speech[k:k + BATCH].to(device))["raw_aus"].cpu()
                         for k in range(0, len(audio), BATCH)])
        net.train(was_training)
        return out

    head.ready.zero_()
    raw = predict()  # the linear head alone: its z-units
    x = speech.flatten(1)
    head.in_mean.copy_(x.mean(0))
    head.in_std.copy_(x.std(0).clamp_min(1e-3))
    head.lin_mean.copy_(raw.mean(0))
    head.lin_std.copy_(raw.std(0).clamp_min(1e-3))
    target = (aus - aus.mean(0)) / aus.std(0).clamp_min(1e-3)
    w = torch.as_tensor(au_weights, dtype=torch.float32, device=device)
    speech_d, target_d = speech.to(device), target.to(device)
    head.train()
    loss = torch.zeros(())
    for i, mlp in enumerate(head.nets):
        gen = torch.Generator().manual_seed(seed * 1000 + i)
        torch.manual_seed(seed * 1000 + i)
        for p in mlp.parameters():  # each MLP from its own seed
            if p.dim() > 1:
                torch.nn.init.kaiming_uniform_(p, a=5 ** 0.5)
            else:
                torch.nn.init.zeros_(p)
        opt = torch.optim.AdamW(mlp.parameters(), cfg.formant_lr, weight_decay=cfg.formant_weight_decay)
        for _ in range(cfg.formant_epochs):
            for idx in torch.randperm(len(x), generator=gen).split(cfg.formant_batch):
                idx = idx.to(device)
                xb = (speech_d[idx].flatten(1) - head.in_mean) / head.in_std
                loss = ((mlp(xb) - target_d[idx]).pow(2) * w).sum(1).mean() / w.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
    head.ready.fill_(1.0)
    blended = predict()
    from hm_talker.constants import JAW_AU_IDX
    from hm_talker.metrics.correlation import pearson

    mouth = list(JAW_AU_IDX)
    out = {"formant_loss": float(loss.detach()), "formant_mouth_r_train": pearson(blended[:, mouth].sum(1), aus[:, mouth].sum(1)),
           "linear_mouth_r_train": pearson(raw[:, mouth].sum(1), aus[:, mouth].sum(1))}
    log.info("CMMM formant head: %d MLPs x %d epochs on %d frames; mouth r on them %.2f (linear head alone %.2f)",
             len(head.nets), cfg.formant_epochs, len(x), out["formant_mouth_r_train"] or 0.0,
             out["linear_mouth_r_train"] or 0.0)
    return out
