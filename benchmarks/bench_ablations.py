"""HM-Talker against its ablations: the same budget, the same identity, 2 seeds, one table.

usage: python benchmarks/bench_ablations.py --data IDENTITY_DIR --drive-video OTHER_SPEAKER.mp4
           [--steps 1500] [--seeds 0 1] [--configs hm_talker implicit_only ...] [--out bench_ablations_out]
       python benchmarks/bench_ablations.py --synthetic      (a synthetic talker and a synthetic other speaker)

Every configuration of experiments/ (hm_talker.yaml and ablations/*.yaml) is trained with `hm-talker fit`
for --steps steps, then scored with `hm-talker evaluate` self-driven (the held-out tail driven by its own
sound: --ckpt --data) and cross-driven with a reference video (--ckpt --drive-video: another real speaker's
sound drives the model; that speaker's real mouth is the reference). Prints mean +- spread over seeds.
Finished runs and evaluations are kept under --out and skipped on a re-run (resumable).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"hm_talker": "experiments/hm_talker.yaml",
           **{p.stem: f"experiments/ablations/{p.name}" for p in sorted((REPO / "experiments" / "ablations").glob("*.yaml"))}}
KEYS = ["psnr_face", "lpips_face", "lmd", "mouth_r", "mouth_amp", "mouth_jitter", "aue_lower"]
# cross-driven frames have no ground-truth frame: only the mouth trajectory is scored
PROTOCOL_KEYS = {"self": KEYS, "cross": ["mouth_r", "mouth_amp", "mouth_jitter"]}


def hm(*args: str) -> None:
    cmd = [sys.executable, "-m", "hm_talker.cli", "-q", *args]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{r.stderr[-2000:]}")


def synthetic_inputs(out: Path, size: int) -> tuple[Path, Path]:
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip

    ident, ref = out / "synthetic_identity", out / "other_speaker.mp4"
    if not (ident / "manifest.json").is_file():
        clip = make_synthetic_clip(out / "synthetic_talker.mp4", seconds=24.0, size=256, seed=0)
        preprocess([clip.path], ident, PreprocessConfig(size=size, shard_frames=64))
    if not ref.is_file():
        make_synthetic_clip(ref, seconds=10.0, size=256, seed=5)  # another face, other speech
    return ident, ref


def train_and_score(name: str, seed: int, args, ident: Path, ref: Path) -> dict:
    run_dir = args.out / "runs" / f"{name}-seed{seed}"
    steps_s = None
    if not (run_dir / "summary.json").is_file():
        t = time.perf_counter()
        hm("fit", CONFIGS[name], f"data.root={ident}", f"run.dir={args.out / 'runs'}", f"run.name={name}-seed{seed}",
           f"seed={seed}", f"trainer.max_steps={args.steps}", f"trainer.val_every={args.steps}",
           f"trainer.checkpoint_every={args.steps}", "data.num_workers=0", *args.overrides)
        steps_s = args.steps / (time.perf_counter() - t)
        (run_dir / "bench.json").write_text(json.dumps({"steps_per_s": steps_s}))
    elif (run_dir / "bench.json").is_file():
        steps_s = json.loads((run_dir / "bench.json").read_text())["steps_per_s"]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    scores = {"steps_per_s": steps_s}
    for protocol, flags in (("self", ["--data", str(ident)]), ("cross", ["--drive-video", str(ref)])):
        ev = args.out / "eval" / protocol / f"{name}-seed{seed}"
        if not (ev / "metrics.json").is_file():
            hm("evaluate", "--ckpt", str(ckpt), *flags, "--out", str(ev))
        m = json.loads((ev / "metrics.json").read_text())
        scores.update({f"{protocol}/{k}": m.get(k) for k in PROTOCOL_KEYS[protocol]})
    return scores


def fmt(values: list) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "n/a"
    return f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="preprocessed identity")
    ap.add_argument("--drive-video", type=Path, help="a video of another person speaking (cross-driven reference)")
    ap.add_argument("--synthetic", action="store_true", help="use a synthetic talker and a synthetic other speaker")
    ap.add_argument("--size", type=int, default=128, help="frame side of the synthetic identity")
    ap.add_argument("--steps", type=int, default=1500, help="training steps per run (the budget)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--out", type=Path, default=Path("bench_ablations_out"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="extra fit overrides for every run (e.g. model.gaussians.num_face=1000)")
    args = ap.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.synthetic:
        ident, ref = synthetic_inputs(args.out, args.size)
    elif args.data and args.drive_video:
        ident, ref = args.data.resolve(), args.drive_video.resolve()
    else:
        ap.error("give --data and --drive-video, or --synthetic")
    results = {name: [train_and_score(name, s, args, ident, ref) for s in args.seeds] for name in args.configs}
    (args.out / "table.json").write_text(json.dumps(results, indent=2))
    cols = [f"{p}/{k}" for p, keys in PROTOCOL_KEYS.items() for k in keys] + ["steps_per_s"]
    print(f"identity {ident}, cross-driven by {ref}, {args.steps} steps, seeds {args.seeds}\n")
    print("| config | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name, runs in results.items():
        print(f"| {name} | " + " | ".join(fmt([r[c] for r in runs]) for c in cols) + " |")


if __name__ == "__main__":
    main()
