"""Throughput of the evaluation metrics (frames per second), to budget evaluation runs.

Runs every metric of :mod:`hm_talker.metrics` on synthetic clips (default 100 frames at 256 and
512 px) and prints a markdown table. "sync scoring" is the Sync-C/D/offset computation on
SyncNet embeddings; "syncnet embed" is the network forward pass (random weights: the cost does
not depend on them) on 224 px face crops, which dominates Sync metrics in practice. "mouth
metrics" is the weight-free lip-sync measure end to end on frames of the synthetic talking face:
mediapipe face-mesh landmarks of a generated and a reference clip, the opening trajectories and
mouth_r / mouth_lag / mouth_amp / mouth_jitter (frames/s counts frames of one clip; both clips'
landmarks are detected); "mouth scoring" is the metric alone on given trajectories.

    python benchmarks/bench_metrics.py [--frames 100] [--sizes 256 512] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from hm_talker.metrics import au, image, landmark, mouth, sync


def _timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _clips(frames: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 256, size=(frames, size, size, 3), dtype=np.uint8)
    pred = np.clip(target.astype(np.int16) + rng.integers(-8, 9, size=target.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((frames, size, size), bool)
    mask[:, size // 4:3 * size // 4, size // 4:3 * size // 4] = True
    return pred, target, mask


def _faces(frames: int, size: int):
    """Two clips of the synthetic talking face (different mouth tracks) at ``size`` px."""
    from hm_talker.synthetic import render_frames

    t = np.arange(frames) / 25.0
    a = np.stack(list(render_frames(0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t), 25.0, size, 0)))
    b = np.stack(list(render_frames(0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t + 0.5), 25.0, size, 0)))
    return a, b


def _mouth(pred, target) -> dict:
    from hm_talker.preprocess.landmarks import detect_landmarks

    return mouth.mouth_scores(mouth.mouth_opening(detect_landmarks(pred)),
                              mouth.mouth_opening(detect_landmarks(target)))


def bench(frames: int, sizes: list[int], device: str, syncnet: bool) -> list[tuple[str, str, float]]:
    rows = []
    warm_p, warm_t, warm_m = _clips(2, 64)
    image.lpips_per_frame(warm_p, warm_t, device=device)  # model build + first-call costs
    image.psnr(warm_p, warm_t, device=device)
    image.ssim(warm_p, warm_t, device=device)
    for size in sizes:
        faces = _faces(frames, size)  # drawn outside the timer
        rows.append(("mouth metrics", f"{size} px, landmarks + metric", frames / _timed(lambda: _mouth(*faces))))
    for size in sizes:
        pred, target, mask = _clips(frames, size)
        cases = {
            "PSNR": lambda: image.psnr(pred, target, device=device),
            "PSNR face": lambda: image.psnr_face(pred, target, mask, device=device),
            "SSIM": lambda: image.ssim(pred, target, device=device),
            "SSIM face": lambda: image.ssim_face(pred, target, mask, device=device),
            "LPIPS": lambda: image.lpips_distance(pred, target, device=device),
            "LPIPS face": lambda: image.lpips_face(pred, target, mask, device=device),
        }
        for name, fn in cases.items():
            rows.append((name, f"{size} px", frames / _timed(fn)))
    rng = np.random.default_rng(1)
    lm_p, lm_t = rng.normal(size=(frames, 40, 2)) * 20, rng.normal(size=(frames, 40, 2)) * 20
    rows.append(("LMD", "40 points", frames / _timed(lambda: landmark.lmd(lm_p, lm_t), 5)))
    op_p, op_t = rng.uniform(0, 0.3, frames), rng.uniform(0, 0.3, frames)
    rows.append(("mouth scoring", "opening, ±4 lags", frames / _timed(lambda: mouth.mouth_scores(op_p, op_t), 5)))
    au_p, au_t = rng.uniform(0, 5, (frames, 17)), rng.uniform(0, 5, (frames, 17))
    rows.append(("AUE", "17 AUs", frames / _timed(lambda: au.aue(au_p, au_t), 5)))
    emb_v, emb_a = rng.normal(size=(frames, 1024)), rng.normal(size=(frames, 1024))
    rows.append(("sync scoring", "1024-d, ±15", frames / _timed(lambda: sync.sync_scores(emb_v, emb_a), 5)))
    if syncnet:
        import tempfile
        from pathlib import Path

        from syncnet_python.SyncNetModel import S

        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "random_syncnet.model"
            torch.save(S().state_dict(), weights)
            scorer = sync.SyncNetScorer(weights, device=device)
            crops = rng.integers(0, 256, size=(frames, 224, 224, 3), dtype=np.uint8)
            audio = rng.normal(0, 0.1, frames * 640).astype(np.float32)
            rows.append(("syncnet embed", "224 px crops", frames / _timed(lambda: scorer.embed(crops, audio))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-syncnet", action="store_true", help="skip the SyncNet forward pass")
    args = parser.parse_args()
    rows = bench(args.frames, args.sizes, args.device, not args.no_syncnet)
    print(f"# metrics throughput: {args.frames} frames, device={args.device}, "
          f"torch threads={torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    print("| metric | input | frames/s |")
    print("|---|---|---|")
    for name, what, fps in rows:
        print(f"| {name} | {what} | {fps:,.1f} |")


if __name__ == "__main__":
    main()
