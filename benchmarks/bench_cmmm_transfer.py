"""Does a stage-1 CMMM predict the mouth of speakers it never heard? One table per checkpoint set.

For every (CMMM checkpoint, preprocessed identity) pair: CMMM predicts the 17 AUs of every frame
of the identity from its audio alone (speaker-normalised by that identity's own band statistics,
as inference does), and the score is the Pearson r between the predicted mouth AUs (AU25 + AU26,
raw) and the real mouth opening of the same frames (inner-lip gap over inter-ocular distance,
mediapipe points 13-14 / 33-263, from the identity's landmarks): an independent truth, not the AUs
CMMM was trained on. Split into the identity's train and held-out (val) frames; for an identity the
CMMM never saw, both columns are unseen speech. This is the first link of cross-driven lip sync
(`evaluate --drive-video`): the model's mouth can follow the driving speech only as well as this.
The last column is the baseline: the same r for the sound's loudness alone (per-frame speech energy);
a CMMM that has learned more than loudness scores above it.

    hm-talker fit-cmmm experiments/cmmm_stage1.yaml data.roots=[A,B,...] run.name=cmmm-many
    python benchmarks/bench_cmmm_transfer.py --ckpt runs/cmmm-many/checkpoints/last.ckpt \
        RUN_DIR/cmmm/last.ckpt --data TEST_IDENTITY_A TEST_IDENTITY_B

A few seconds per pair on a CPU.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hm_talker.evaluation.cmmm_transfer import load_cmmm, loudness_r, mouth_transfer_r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, nargs="+", required=True, help="CMMM checkpoints (fit-cmmm or RUN_DIR/cmmm)")
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="preprocessed identities to score on")
    args = ap.parse_args()
    print("| CMMM checkpoint | identity | r train frames | r held-out frames | r all frames | loudness alone, all frames |")
    print("|---|---|---:|---:|---:|---:|")
    loud = {root: loudness_r(root) for root in args.data}
    for ckpt in args.ckpt:
        net, cfg = load_cmmm(ckpt)
        label = ckpt.parent.parent.name if ckpt.parent.name in ("checkpoints", "cmmm") else ckpt.stem
        for root in args.data:
            r = mouth_transfer_r(net, cfg.data.window, root)
            print(f"| {label} | {root.name} | {r['train']:.3f} | {r['val']:.3f} | {r['all']:.3f} | {loud[root]:.3f} |")


if __name__ == "__main__":
    main()
