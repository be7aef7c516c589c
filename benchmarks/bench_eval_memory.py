"""Peak memory (RSS) of `hm-talker evaluate` on a short and a long clip: it must not grow with the length.

Makes its own inputs in --work: a pair of synthetic talking-face clips (:func:`make_synthetic_clip`,
two seeds) of --short seconds (10) at --size px, looped with ffmpeg to --long seconds, or with
``--source VIDEO`` a real clip looped / cut to both lengths and scaled to --size px as the target and
the same frames blurred and re-encoded as the prediction; synthetic speech of the same lengths; and, for `--ckpt --audio`, a tiny checkpoint (20 steps on the synthetic face preprocessed
at 64 px, the test suite's small model). Each evaluation runs in a fresh process under a wrapper
process that reads the child's peak resident set size (``getrusage(RUSAGE_CHILDREN).ru_maxrss``:
the wrapper has one child, so the maximum over its children is that child; ffmpeg and ffprobe
grandchildren are far smaller). Prints a markdown table: input, frames, peak RSS in MB and the ratio
to the short clip of the same protocol (goal: the long clip within 1.2x).

    python benchmarks/bench_eval_memory.py [--size 256] [--short 10] [--long 300] [--work DIR]
        [--code DIR] [--protocols pair audio] [--source VIDEO]

e.g. the 512 px rows of the README: ``--size 512 --short 12 --long 71 --protocols pair
--source ../shared/data/real/long1_fr_30fps.mp4``.

``--code DIR`` runs `hm-talker evaluate` from another checkout (its root first on PYTHONPATH), e.g.
the previous version, on the same inputs for comparison.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SHORT_S = 10.0
WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)")
SMALL = ["model.gaussians.num_face=300", "model.gaussians.num_mouth=50", "data.num_workers=0",
         "data.batch_size=2", "cmmm.pretrain_steps=20"]  # as the test suite's small model


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def make_inputs(work: Path, size: int, long_s: float, protocols: list[str], short_s: float = SHORT_S,
                source: Path | None = None) -> dict:
    """The pair clips, the speech and (for --audio) the checkpoint; reused when already in ``work``."""
    from hm_talker.synthetic import make_synthetic_clip, make_synthetic_speech

    work.mkdir(parents=True, exist_ok=True)
    out = {}
    tag = f"{source.stem}_" if source else ""
    for name, seed in (("pred", 1), ("target", 2)):
        short, long_ = (work / f"{tag}{name}_{size}px_{s:g}s.mp4" for s in (short_s, long_s))
        for path, seconds in ((short, short_s), (long_, long_s)):
            if path.is_file():
                continue
            if source is not None:  # the real clip, looped as needed; the prediction a degraded copy
                degrade = ",gblur=sigma=1.5,eq=brightness=0.03" if name == "pred" else ""
                _ffmpeg("-stream_loop", "-1", "-i", str(source), "-t", f"{seconds:g}", "-vf",
                        f"scale={size}:{size}{degrade}", "-c:v", "libx264", "-crf", "18" if name == "target" else "28",
                        "-pix_fmt", "yuv420p", "-r", "25", "-c:a", "aac", str(path))
            elif path == short:
                make_synthetic_clip(short, seconds=short_s, size=size, seed=seed)
            else:
                _ffmpeg("-stream_loop", str(int(long_s // short_s)), "-i", str(short), "-t", f"{long_s:g}",
                        "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", "-r", "25", "-c:a", "aac",
                        str(long_))
        out[name] = (short, long_)
    if "audio" in protocols:
        out["speech"] = []
        for seconds in (short_s, long_s):
            wav = work / f"speech_{seconds:g}s.wav"
            if not wav.is_file():
                make_synthetic_speech(wav, seconds=seconds, seed=5)
            out["speech"].append(wav)
        out["ckpt"] = _checkpoint(work)
    return out


def _checkpoint(work: Path) -> Path:
    ckpt = work / "runs" / "tiny" / "checkpoints" / "last.ckpt"
    if ckpt.is_file():
        return ckpt
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip
    from hm_talker.training.fit import fit

    clip = make_synthetic_clip(work / "identity.mp4", seconds=6.0, size=256, seed=0)
    preprocess([clip.path], work / "identity64", PreprocessConfig(size=64, shard_frames=16))
    fit(None, [f"data.root={work / 'identity64'}", f"run.dir={work / 'runs'}", "run.name=tiny",
               "trainer.max_steps=20", *SMALL], False)
    return ckpt


def peak_rss(args: list[str], code: Path, out: Path) -> tuple[float, int]:
    """(peak RSS in MB, frames scored) of `hm-talker evaluate ARGS --out OUT` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(code), "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "hm_talker.cli", "evaluate", *args,
           "--out", str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=code)  # `-m` puts the cwd first
    kb, rc = res.stdout.strip().splitlines()[-1].split()
    if rc != "0":
        raise SystemExit(f"evaluate failed ({rc}): {res.stderr.strip()[-2000:]}")
    return int(kb) / 1024, json.loads((out / "metrics.json").read_text())["num_frames"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256, help="frame side of the --pred/--target clips (px)")
    ap.add_argument("--short", type=float, default=SHORT_S, help="length of the short inputs (s)")
    ap.add_argument("--long", type=float, default=300.0, help="length of the long inputs (s)")
    ap.add_argument("--source", type=Path, default=None,
                    help="a real video to loop / cut into the pair (default: synthetic clips)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the inputs (reused) and outputs")
    ap.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                    help="checkout whose `hm-talker evaluate` runs (default: this one)")
    ap.add_argument("--protocols", nargs="+", default=["pair", "audio"], choices=["pair", "audio"])
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-eval-memory-"))
    inputs = make_inputs(work, args.size, args.long, args.protocols, args.short, args.source)
    runs = []
    if "pair" in args.protocols:
        for i, seconds in enumerate((args.short, args.long)):
            runs.append((f"--pred/--target {args.size} px, {seconds:g} s",
                         ["--pred", str(inputs["pred"][i]), "--target", str(inputs["target"][i])]))
    if "audio" in args.protocols:
        for i, seconds in enumerate((args.short, args.long)):
            runs.append((f"--ckpt --audio (64 px model), {seconds:g} s",
                         ["--ckpt", str(inputs["ckpt"]), "--audio", str(inputs["speech"][i])]))
    print(f"code: {args.code.name}; inputs in {work}\n")
    print(f"| input | frames | peak RSS (MB) | ratio vs {args.short:g} s |")
    print("|---|---:|---:|---:|")
    base = None
    for k, (name, argv) in enumerate(runs):
        out = work / "out" / f"{args.code.name}-{k}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        mb, frames = peak_rss(argv, args.code, out)
        base = mb if k % 2 == 0 else base
        print(f"| {name} | {frames} | {mb:.0f} | {mb / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
