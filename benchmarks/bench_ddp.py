"""DDP scaling of training: steps/s and frames/s with 1 vs 2 CPU processes (gloo), the gradient bytes
all-reduced per step, and the measured all-reduce time of that many bytes between 2 processes.

usage: python benchmarks/bench_ddp.py [--size 64] [--steps 40] [--num-face 2000]
Makes a synthetic identity, trains `--steps` steps with trainer.devices=1 and =2 (densification off in
both: it is single-device today; batch 2 per process, so the 2-process step trains 4 frames), times
the second half of the steps on rank zero, and prints a markdown table. Rows: 1 process on all cores,
1 process on half of them, 2 processes on half each (the same cores as the first row).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logging.basicConfig(level=logging.ERROR)
REPO = Path(__file__).resolve().parents[1]


def worker(out: Path, overrides: list[str]) -> None:
    """One `fit` (re-run by Lightning for the other ranks); rank zero writes step times and grad bytes."""
    import lightning as L

    from hm_talker.training.fit import fit

    class Clock(L.Callback):
        def __init__(self):
            self.t, self.grad_numel = [], 0

        def on_train_batch_end(self, trainer, pl_module, *a):
            self.t.append(time.perf_counter())
            if not self.grad_numel:  # what DDP all-reduces: every trainable parameter's gradient
                self.grad_numel = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)

        def on_train_end(self, trainer, pl_module):
            if trainer.is_global_zero:
                out.write_text(json.dumps({"t": self.t, "grad_numel": self.grad_numel,
                                           "world": trainer.world_size}))

    fit(None, overrides, False, callbacks=[Clock()])


def allreduce_seconds(numel: int, reps: int = 10) -> float:
    """Mean wall seconds of one gloo all_reduce of `numel` float32 between 2 local processes."""
    code = (
        "import os,sys,time,torch,torch.distributed as d\n"
        "r=int(sys.argv[1]);n=int(sys.argv[2]);k=int(sys.argv[3]);torch.set_num_threads(1)\n"
        "d.init_process_group('gloo',rank=r,world_size=2,init_method='tcp://127.0.0.1:'+sys.argv[4])\n"
        "x=torch.ones(n);d.all_reduce(x);d.barrier();t=time.perf_counter()\n"
        "for _ in range(k): d.all_reduce(x)\n"
        "d.barrier();print((time.perf_counter()-t)/k)\n")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    procs = [subprocess.Popen([sys.executable, "-c", code, str(r), str(numel), str(reps), port],
                              stdout=subprocess.PIPE, text=True) for r in range(2)]
    return float(procs[0].communicate()[0].strip() or "nan") if not procs[1].wait() else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--num-face", type=int, default=2000)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args()
    if args.worker:
        return worker(Path(args.worker), rest)

    import torch

    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip

    tmp = Path(tempfile.mkdtemp())
    clip = make_synthetic_clip(tmp / "clip.mp4", seconds=8, size=256, seed=0)
    ident = tmp / "ident"
    preprocess([clip.path], ident, PreprocessConfig(size=args.size, shard_frames=16))
    cores = os.cpu_count() or 1
    print(f"torch {torch.__version__}, {cores} cores, {args.size} px, {args.num_face} face Gaussians, "
          f"batch 2 per process\n")
    print("| processes | threads each | step ms | steps/s | frames/s | speed-up (frames/s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    base, grad_numel = None, 0
    for procs, threads in ((1, cores), (1, max(1, cores // 2)), (2, max(1, cores // 2))):
        out = tmp / f"t{procs}-{threads}.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}
        env.update(OMP_NUM_THREADS=str(threads), WANDB_MODE="disabled",
                   PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
        overrides = [f"data.root={ident}", f"run.dir={tmp / 'runs'}", f"run.name=p{procs}t{threads}",
                     f"trainer.max_steps={args.steps}", f"trainer.devices={procs}", "trainer.accelerator=cpu",
                     "data.num_workers=0", "trainer.val_every=100000", "trainer.checkpoint_every=100000",
                     "trainer.limit_val_batches=1", "strategy.enabled=false",
                     f"model.gaussians.num_face={args.num_face}"]
        subprocess.run([sys.executable, __file__, "--worker", str(out), *overrides], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = json.loads(out.read_text())
        t = r["t"][len(r["t"]) // 2:]
        step = (t[-1] - t[0]) / (len(t) - 1)
        fps = 2 * procs / step
        base = base or fps
        grad_numel = r["grad_numel"]
        print(f"| {procs} | {threads} | {step * 1e3:.0f} | {1 / step:.2f} | {fps:.1f} | "
              f"{fps / base:.2f} |")
    ar = allreduce_seconds(grad_numel)
    print(f"\ngradient all-reduced per step: {grad_numel} float32 = {grad_numel * 4 / 2**20:.2f} MiB; "
          f"one gloo all_reduce of it between 2 local processes: {ar * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
