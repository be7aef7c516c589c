"""What lip sync in every validation costs (hm_talker/evaluation/validation.py), per 100 frames, so a user
can choose `trainer.val_every`.

usage: python benchmarks/bench_lip_sync_validation.py [--size 256] [--num-face 2000] [--seconds 24]
Makes a synthetic identity (its held-out tail: the last 1/11) and a 4 s reference of another synthetic
face with other speech, builds the default model (untrained: the cost does not depend on the weights)
and times, per 100 frames: the self-driven scores (render the held-out frames, face mesh of generated
and real frames, image metrics), the cross-driven scores (features, calibration, render, h264 encode,
decode, face mesh of the driven clip; the reference's face mesh is computed once per run and is not
counted), and the plain render of `validation_step` (psnr_val) for comparison. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

logging.basicConfig(level=logging.ERROR)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, nargs="+", default=[256])
    ap.add_argument("--num-face", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=24.0, help="length of the synthetic identity's clip")
    args = ap.parse_args()

    import torch
    from omegaconf import OmegaConf

    from hm_talker.config.fit import load_config
    from hm_talker.data.identity import held_out_frames, load_features, load_manifest
    from hm_talker.driving.render import render_held_out
    from hm_talker.driving.speech import held_out_speech
    from hm_talker.evaluation.protocols import cross_reference, reference_video, self_driven
    from hm_talker.model.talking_head import TalkingHead
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip

    tmp = Path(tempfile.mkdtemp())
    clip = make_synthetic_clip(tmp / "clip.mp4", seconds=args.seconds, size=max(args.size), seed=0)
    ref_clip = make_synthetic_clip(tmp / "ref.mp4", seconds=4.0, size=max(args.size), seed=5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| size | face Gaussians | held-out frames | render only (s / 100 frames) | self-driven scores "
          "(s / 100 frames) | cross-driven scores (s / 100 frames) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in args.size:
        ident = tmp / f"id{size}"
        manifest = preprocess([clip.path], ident, PreprocessConfig(size=size, shard_frames=64))
        manifest = load_manifest(ident)
        cfg = load_config(None, [f"data.root={ident}", f"model.gaussians.num_face={args.num_face}"])
        k, d = manifest["features"]["audio"]["shape"]
        cfg.model.audio.rows_per_frame, cfg.model.audio.feature_dim = int(k), int(d)
        model = TalkingHead(OmegaConf.to_object(cfg), load_features(ident)["mean_shape"]).eval()
        n = len(held_out_frames(manifest))
        t = time.perf_counter()
        windows, speaker, offset = held_out_speech(model, ident, manifest)
        for _ in render_held_out(model, ident, manifest, windows, speaker=speaker, offset=offset):
            pass
        render_s = time.perf_counter() - t
        t = time.perf_counter()
        self_driven(model, ident, manifest)
        self_s = time.perf_counter() - t
        ref = reference_video(ref_clip.path, manifest["sample_rate"])  # once per run: not timed
        t = time.perf_counter()
        m = cross_reference(model, ident, manifest, ref, tmp / f"cross{size}.mp4")
        cross_s = time.perf_counter() - t
        frames = m["num_frames"]
        print(f"| {size} | {args.num_face} | {n} | {100 * render_s / n:.1f} | {100 * self_s / n:.1f} | "
              f"{100 * cross_s / frames:.1f} |")


if __name__ == "__main__":
    main()
