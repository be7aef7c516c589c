"""Preprocessing throughput (end to end) and shard reading against per-sample mp4 decoding.

usage: python benchmarks/bench_preprocess.py [CLIPS_DIR]   (default: the shared real clips, else a
synthetic clip). Prints a markdown table; numbers depend on the machine (cores, disk).
"""
from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hm_talker.preprocess.config import PreprocessConfig
from hm_talker.preprocess.pipeline import preprocess

logging.basicConfig(level=logging.ERROR)


def clips(arg: str | None) -> list[Path]:
    d = Path(arg) if arg else Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
    found = sorted(d.glob("*.mp4")) if d.is_dir() else []
    if found:
        return found
    from hm_talker.synthetic import make_synthetic_clip

    return [make_synthetic_clip(Path(tempfile.mkdtemp()) / "synthetic.mp4", seconds=20, size=512).path]


def bench_preprocess(videos, size, tmp) -> tuple[int, float]:
    frames, secs = 0, 0.0
    for v in videos:
        t = time.perf_counter()
        m = preprocess([v], Path(tmp) / f"{v.stem}_{size}", PreprocessConfig(size=size))
        secs += time.perf_counter() - t
        frames += m["num_frames"]
    return frames, secs


def bench_reading(video: Path, ident: Path) -> tuple[float, float]:
    """samples/s: shard pipeline (decode stage) vs decord random access + crop per sample.

    One torch thread, as in a DataLoader worker (the unit that scales with num_workers)."""
    import decord
    import torch

    torch.set_num_threads(1)

    from datamodules import TalkingHeadDataModule
    from hm_talker.preprocess.track import crop_frame

    dm = TalkingHeadDataModule(str(ident), batch_size=1, num_workers=0)
    dm.setup()
    t = time.perf_counter()
    n = sum(1 for _ in dm.train_pipeline())
    shard_rate = n / (time.perf_counter() - t)

    feats = np.load(ident / "features.npz")
    order = np.random.default_rng(0).permutation(len(feats["src_frames"]))[:64]
    vr = decord.VideoReader(str(video), ctx=decord.cpu(0))
    t = time.perf_counter()
    for i in order:
        frame = vr[int(feats["src_frames"][i])].asnumpy()
        crop_frame(frame, feats["boxes"][i], dm.manifest["size"])
    mp4_rate = len(order) / (time.perf_counter() - t)
    return shard_rate, mp4_rate


def main():
    videos = clips(sys.argv[1] if len(sys.argv) > 1 else None)
    preprocess([videos[0]], Path(tempfile.mkdtemp()) / "warmup", PreprocessConfig(size=64))  # imports, numba
    print(f"{len(videos)} clip(s): {', '.join(v.name for v in videos)}\n")
    print("| size | frames | seconds | frames/s (end to end) | shard samples/s | mp4+decord samples/s | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (512, 256):
            n, s = bench_preprocess(videos, size, tmp)
            shard, mp4 = bench_reading(videos[0], Path(tmp) / f"{videos[0].stem}_{size}")
            print(f"| {size} | {n} | {s:.1f} | {n / s:.0f} | {shard:.0f} | {mp4:.0f} | {shard / mp4:.1f}x |")


if __name__ == "__main__":
    main()
