"""Training steps/s and inference frames/s of the Gaussian talking head on this machine.

usage: python benchmarks/bench_training.py [--size 128 256 512] [--steps 60] [--device auto|cpu|cuda]
Makes a synthetic identity, trains for --steps (timing the second half, after warm-up) and renders
a 4 s driven video: frames/s of the render alone and end to end (audio features, decoding the
replayed frames, render, h264 encoding). Prints a markdown table; on CUDA the renderer is gsplat.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

logging.basicConfig(level=logging.ERROR)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--num-face", type=int, default=2000)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args()

    import lightning as L
    import torch

    from hm_talker.driving.infer import infer
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip, make_synthetic_speech
    from hm_talker.training.fit import fit

    class Clock(L.Callback):
        def __init__(self):
            self.t = []

        def on_train_batch_end(self, *a):
            self.t.append(time.perf_counter())

    tmp = Path(tempfile.mkdtemp())
    clip = make_synthetic_clip(tmp / "clip.mp4", seconds=8, size=256, seed=0)
    speech = make_synthetic_speech(tmp / "speech.wav", seconds=4.0, seed=3)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CUDA: {torch.cuda.is_available()}\n")
    print("| size | face Gaussians (start -> end) | train steps/s (batch 2) | infer frames/s (render only) "
          "| infer frames/s (end to end) | backend |")
    print("|---:|---:|---:|---:|---:|---|")
    for size in args.size:
        ident = tmp / f"id{size}"
        preprocess([clip.path], ident, PreprocessConfig(size=size, shard_frames=32))
        clock = Clock()
        run = fit(None, [f"data.root={ident}", f"run.dir={tmp / 'runs'}", f"run.name=b{size}",
                         f"trainer.max_steps={args.steps}", "data.num_workers=0", "trainer.val_every=100000",
                         f"model.gaussians.num_face={args.num_face}", "cmmm.pretrain_steps=20",
                         f"trainer.accelerator={'cpu' if args.device == 'cpu' else 'auto'}"], False, callbacks=[clock])
        half = len(clock.t) // 2
        sps = (len(clock.t) - 1 - half) / (clock.t[-1] - clock.t[half])
        ck = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        r = infer(run / "checkpoints" / "last.ckpt", tmp / "speech.wav", tmp / f"driven{size}.mp4",
                  batch_size=8, device=args.device)
        print(f"| {size} | {args.num_face} -> {ck['num_gaussians']['face']} | {sps:.1f} | {r['render_fps']:.1f} "
              f"| {r['end_to_end_fps']:.1f} | {r['backend']} ({r['device']}) |")
    del speech


if __name__ == "__main__":
    main()
