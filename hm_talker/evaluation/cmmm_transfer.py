"""Does a stage-1 CMMM predict the mouth of a speaker it never heard? The first link of cross-driven lip
sync: the driven mouth can follow another person's speech only as well as CMMM's AUs do.

`mouth_transfer_r` has CMMM predict the AUs of every frame of a preprocessed identity from its sound
alone (speaker-normalised by that identity's own band statistics, as driving does) and correlates the
predicted mouth AUs (AU25 + AU26, raw) with the real mouth opening of the same frames (inner-lip gap over
inter-ocular distance, from the identity's landmarks): an independent truth, not the AUs CMMM was trained
on. Used by benchmarks/bench_cmmm_transfer.py and the transfer test.

`loudness_r` is the baseline any such number must be read against: the same correlation for the sound's
own loudness (the per-frame speech energy, normalised per clip, that CMMM's speech window also reads).
Real mouths open more on loud syllables, so a predictor that only follows loudness scores well above zero
(0.44 on long2 of the shared real clips); a CMMM that has learned more than loudness scores above it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hm_talker.constants import AU_NAMES
from hm_talker.data.identity import load_features, load_manifest
from hm_talker.data.windows import Windows, band_stats, speech_features
from hm_talker.metrics.correlation import pearson
from hm_talker.metrics.mouth import mouth_opening

MOUTH = [AU_NAMES.index("AU25"), AU_NAMES.index("AU26")]


def load_cmmm(ckpt: Path):
    """The checkpoint's CMMM (its own architecture, from the config it stores) in eval mode, and that config."""
    from omegaconf import OmegaConf

    from hm_talker.config.cmmm import CMMMFitConfig
    from hm_talker.safe_read import load_checkpoint
    from hm_talker.training.stage1 import build_net, load_cmmm_weights

    stored = load_checkpoint(ckpt, "CMMM checkpoint").get("config") or {}
    from hm_talker.config.cmmm import with_legacy_defaults

    cfg = with_legacy_defaults(OmegaConf.merge(OmegaConf.structured(CMMMFitConfig), stored), stored)
    net = build_net(cfg)
    load_cmmm_weights(net, ckpt, cfg.audio)
    return net.eval(), cfg


@torch.no_grad()
def predicted_opening(net, window: int, root: Path, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(CMMM's AU25 + AU26 of every frame of `root` from its sound [T], the real opening [T])."""
    manifest, arrays = load_manifest(root), load_features(root)
    audio = arrays["audio"].astype(np.float32)
    net.set_audio_stats(*map(torch.from_numpy, band_stats(audio)))
    windows = Windows(audio, arrays["aus"].astype(np.float32), arrays["clip_ids"], window,
                      *speech_features(manifest, arrays, net.cfg.speech_window, net.cfg.formant_share > 0))
    frames = np.arange(len(audio))
    pred = [net(**windows.speech_batch(frames[i:i + batch]))["raw_aus"][:, MOUTH].sum(1)
            for i in range(0, len(frames), batch)]
    return torch.cat(pred).numpy(), mouth_opening(arrays["landmarks"])


def _r(pred: np.ndarray, opening: np.ndarray) -> float:
    ok = np.isfinite(opening)
    r = pearson(pred[ok], opening[ok])
    return float("nan") if r is None else float(r)


def loudness_r(root: Path) -> float:
    """Pearson r of the identity's per-frame speech energy (mean over its rows) with the real opening."""
    arrays = load_features(root)
    if "speech" not in arrays:
        return float("nan")
    return _r(arrays["speech"][:, :, 0].mean(1), mouth_opening(arrays["landmarks"]))


def mouth_transfer_r(net, window: int, root: Path) -> dict[str, float]:
    """Pearson r of predicted AU25 + AU26 against the real opening on the identity's train frames, its
    held-out frames and all of them (NaN where undefined)."""
    pred, opening = predicted_opening(net, window, root)
    n_train = int(load_manifest(root)["splits"]["train"])
    return {name: _r(pred[sel], opening[sel])
            for name, sel in (("train", slice(0, n_train)), ("val", slice(n_train, None)), ("all", slice(None)))}
