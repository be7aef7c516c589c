"""Does a stage-1 CMMM predict the mouth of speakers it never heard? One table per checkpoint set.

For every (CMMM checkpoint, preprocessed identity) pair: CMMM predicts the 17 AUs of every frame
of the identity from its audio alone (speaker-normalised by that identity's own band statistics,
as inference does), and the score is the Pearson r between the predicted mouth AUs (AU25 + AU26,
raw) and the real mouth opening of the same frames (inner-lip gap over inter-ocular distance,
mediapipe points 13-14 / 33-263, from the identity's landmarks): an independent truth, not the AUs
CMMM was trained on. Split into the identity's train and held-out (val) frames; for an identity the
CMMM never saw, both columns are unseen speech. This is the first link of cross-driven lip sync
(`evaluate --drive-video`): the model's mouth can follow the driving speech only as well as this.

    hm-talker fit-cmmm experiments/cmmm_stage1.yaml data.roots=[A,B,...] run.name=cmmm-many
    python benchmarks/bench_cmmm_transfer.py --ckpt runs/cmmm-many/checkpoints/last.ckpt \
        RUN_DIR/cmmm/last.ckpt --data TEST_IDENTITY_A TEST_IDENTITY_B

A few seconds per pair on a CPU.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from datamodules import FeatureWindowDataModule
from hm_talker.config.cmmm import CMMMFitConfig
from hm_talker.constants import AU_NAMES
from hm_talker.data.windows import band_stats
from hm_talker.metrics.correlation import pearson
from hm_talker.metrics.mouth import mouth_opening
from hm_talker.model.cmmm import CMMM
from hm_talker.training.stage1 import build_net, load_cmmm_weights

MOUTH = [AU_NAMES.index("AU25"), AU_NAMES.index("AU26")]


def load_net(ckpt: Path) -> tuple[CMMM, CMMMFitConfig]:
    """The checkpoint's CMMM (its own architecture, from the config it stores), in eval mode."""
    from omegaconf import OmegaConf

    from hm_talker.safe_read import load_checkpoint

    stored = load_checkpoint(ckpt, "CMMM checkpoint").get("config") or {}
    cfg = OmegaConf.merge(OmegaConf.structured(CMMMFitConfig), stored)
    net = build_net(cfg)
    load_cmmm_weights(net, ckpt, cfg.audio)
    return net.eval(), cfg


def transfer_r(net: CMMM, window: int, root: Path) -> dict[str, float]:
    """Pearson r of predicted AU25 + AU26 against the real opening, per split of `root`."""
    with np.load(root / "features.npz", allow_pickle=False) as f:
        net.set_audio_stats(*map(torch.from_numpy, band_stats(f["audio"])))
        opening = mouth_opening(f["landmarks"])  # [T] inter-ocular distances
    dm = FeatureWindowDataModule([str(root)], batch_size=256, window=window, normalise=False,
                                 speech_window=net.cfg.speech_window)
    dm.setup()
    out = {}
    for split in ("train", "val"):
        pred, frames = [], []
        with torch.no_grad():
            for b in dm.loader(split, shuffle=False):
                pred.append(net(b["audio_window"], b.get("speech_window"))["raw_aus"][:, MOUTH].sum(1))
                frames.append(b["frame"])
        p, t = torch.cat(pred).numpy(), torch.cat(frames).numpy()
        ok = np.isfinite(opening[t])
        r = pearson(p[ok], opening[t][ok])
        out[split] = float("nan") if r is None else r
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, nargs="+", required=True, help="CMMM checkpoints (fit-cmmm or RUN_DIR/cmmm)")
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="preprocessed identities to score on")
    args = ap.parse_args()
    print("| CMMM checkpoint | identity | r train frames | r held-out frames |")
    print("|---|---|---:|---:|")
    for ckpt in args.ckpt:
        net, cfg = load_net(ckpt)
        label = ckpt.parent.parent.name if ckpt.parent.name in ("checkpoints", "cmmm") else ckpt.stem
        for root in args.data:
            r = transfer_r(net, cfg.data.window, root)
            print(f"| {label} | {root.name} | {r['train']:.3f} | {r['val']:.3f} |")


if __name__ == "__main__":
    main()
