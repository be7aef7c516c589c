"""Forward+backward time of the pure-PyTorch tile rasteriser vs a dense reference (and gsplat on CUDA).

    python benchmarks/bench_rasterizer.py [--threads 2] [--repeats 5] [--dense-cap 2e8]

The scene is a head-like cloud: N Gaussians in an ellipsoid (70 % near the surface),
sizes ~ the surface spacing (so the image coverage stays similar for every N),
random anisotropy and opacities, one camera filling ~80 % of the frame with the head.

"dense" evaluates every Gaussian at every pixel (sorted by depth, the same 3DGS
maths), in pixel chunks so its memory stays bounded; it is skipped ("n/a") when
N x pixels exceeds ``--dense-cap`` (about 20 s per run on 2 cores).  Peak memory is
the growth of the resident set during one forward+backward, each case in its
own subprocess, sampled from /proc every millisecond.  Timings are wall-clock medians; on a shared machine, re-run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time

import torch

from hm_talker.render import rasterize
from hm_talker.render.projection import project_gaussians


def head_scene(n: int, size: int, seed: int = 0, device: str = "cpu"):
    g = torch.Generator().manual_seed(seed)
    radii = torch.tensor([0.09, 0.12, 0.10])
    d = torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    shell = 0.9 + 0.1 * torch.rand(n, generator=g)
    inner = torch.rand(n, generator=g) ** (1 / 3)
    r = torch.where(torch.rand(n, generator=g) < 0.7, shell, inner)
    means = d * r[:, None] * radii
    spacing = math.sqrt(4 * math.pi * 0.1**2 / n)
    scales = spacing * 0.5 * torch.exp(0.4 * torch.randn(n, 3, generator=g))
    quats = torch.randn(n, 4, generator=g)
    opac = 0.1 + 0.9 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    vm = torch.eye(4)
    vm[2, 3] = 0.6
    f = 0.8 * size * 0.5 / 0.12
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]])
    leaves = [t.to(device).requires_grad_(True) for t in (means, quats, scales, opac, colors)]
    return leaves, vm[None].to(device), K[None].to(device)


def dense_forward_backward(means, quats, scales, opac, colors, vm, K, W, H, weights, max_elems=1 << 24):
    """Every Gaussian x every pixel; backward chunk by chunk into the projected 2D quantities."""
    proj = project_gaussians(means, quats, scales, opac, vm, K, W, H)
    order = torch.argsort(proj.depths[0].detach())
    leaves = {
        "m": proj.means2d[0][order], "con": proj.conics[0][order], "o": opac[order],
        "c": colors[order], "z": proj.depths[0][order],
    }
    valid = proj.valid[0][order].to(means.dtype)
    det = {k: v.detach().requires_grad_(True) for k, v in leaves.items()}
    N = means.shape[0]
    rows = max(1, max_elems // (N * W))
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    out_c, out_a, out_d = [], [], []
    for y0 in range(0, H, rows):
        px, py = xs[y0 : y0 + rows].reshape(-1), ys[y0 : y0 + rows].reshape(-1)
        dx = px[None] - det["m"][:, :1]  # [N, P]
        dy = py[None] - det["m"][:, 1:]
        a, b, c = (det["con"][:, i : i + 1] for i in range(3))
        sig = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp(det["o"][:, None] * torch.exp(-sig), max=0.99) * valid[:, None]
        alpha = alpha * (alpha >= 1 / 255)
        t_next = torch.cumprod(1 - alpha, dim=0)
        keep = (t_next > 1e-4).to(alpha.dtype)
        t_excl = torch.cat([torch.ones_like(t_next[:1]), t_next[:-1]])
        w = alpha * t_excl * keep
        col = w.T @ det["c"]
        acc = w.sum(0)[:, None]
        dep = (w.T @ det["z"][:, None]) / acc.clamp_min(1e-10)
        loss = (col * weights[0][y0 : y0 + rows].reshape(-1, 3)).sum() + acc.sum() + 0.1 * dep.sum()
        loss.backward()
        out_c.append(col.detach())
        out_a.append(acc.detach())
        out_d.append(dep.detach())
    torch.autograd.backward([leaves[k] for k in det], [det[k].grad for k in det])
    return torch.cat(out_c).reshape(1, H, W, 3), torch.cat(out_a).reshape(1, H, W, 1)


def tile_forward_backward(means, quats, scales, opac, colors, vm, K, W, H, weights, backend="torch"):
    c, a, d, meta = rasterize(means, quats, scales, opac, colors, vm, K, W, H, backend=backend)
    (c * weights).sum().add(a.sum()).add(0.1 * d.sum()).backward()
    return c.detach(), a.detach()


class RssPeak:
    """Peak resident memory above the level at entry, polled every millisecond (Linux)."""

    def __enter__(self):
        self._page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _poll(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def run_case(kind: str, n: int, size: int, repeats: int, device: str = "cpu") -> dict:
    leaves, vm, K = head_scene(n, size, device=device)
    weights = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(1)).to(device)
    fn = dense_forward_backward if kind == "dense" else tile_forward_backward
    kw = {"backend": kind} if kind in ("gsplat", "torch") else {}

    def once():
        for t in leaves:
            t.grad = None
        out = fn(*leaves, vm, K, size, size, weights, **kw)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with RssPeak() as mem:
        t0 = time.perf_counter()
        img, alpha = once()  # first run: also the peak-memory measurement
        first = time.perf_counter() - t0
    peak = mem.mib
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    times = [first]
    if first < 10:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            once()
            times.append(time.perf_counter() - t0)
    times.sort()
    return {"ms": 1e3 * times[len(times) // 2], "peak_mb": peak, "runs": len(times),
            "checksum": [float(img.sum()), float(alpha.sum())]}


def _subprocess_case(kind, n, size, args):
    cmd = [sys.executable, __file__, "--case", kind, str(n), str(size), "--threads", str(args.threads),
           "--repeats", str(args.repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def max_image_diff(n: int, size: int) -> float:
    """max |dense - tile| colour on this scene (run in-process, small cases only)."""
    leaves, vm, K = head_scene(n, size)
    w = torch.rand(1, size, size, 3)
    ct, _ = tile_forward_backward(*leaves, vm, K, size, size, w)
    cd, _ = dense_forward_backward(*[t.detach().requires_grad_(True) for t in leaves], vm, K, size, size, w)
    return float((ct - cd).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dense-cap", type=float, default=2e8, help="max N*pixels for the dense reference")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--counts", type=int, nargs="+", default=[2000, 10000, 50000])
    ap.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        kind, n, size = args.case[0], int(args.case[1]), int(args.case[2])
        res = run_case(kind, n, size, args.repeats)
        print(json.dumps(res))
        return

    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {args.threads} CPU threads, load average {load:.1f} at start; "
          f"fwd+bwd wall-clock median of {args.repeats}")
    print(f"max |dense - torch| colour, 2k Gaussians @ 64 px: {max_image_diff(2000, 64):.2e}")
    hdr = f"{'N':>7} {'px':>5} | {'torch ms':>9} {'peak MB':>8} | {'dense ms':>9} {'peak MB':>8} | {'speed-up':>8}"
    print(hdr)
    print("-" * len(hdr))
    for size in args.sizes:
        for n in args.counts:
            t = _subprocess_case("torch", n, size, args)
            if n * size * size <= args.dense_cap:
                d = _subprocess_case("dense", n, size, args)
                dense = f"{d['ms']:9.0f} {d['peak_mb']:8.0f} | {d['ms'] / t['ms']:7.0f}x"
            else:
                dense = f"{'n/a':>9} {'':>8} | {'':>8}  (N x pixels > --dense-cap: > ~20 s)"
            print(f"{n:>7} {size:>5} | {t['ms']:9.1f} {t['peak_mb']:8.0f} | {dense}", flush=True)

    if torch.cuda.is_available():
        from hm_talker.render import gsplat_available

        print("\nCUDA, 512 px (peak = torch.cuda.max_memory_allocated)")
        for n in args.counts:
            row = [f"{n:>7}   512"]
            for kind in ("gsplat", "torch"):
                if kind == "gsplat" and not gsplat_available():
                    row.append(f"{kind}: n/a (kernels unavailable)")
                    continue
                r = run_case(kind, n, 512, args.repeats, device="cuda")
                row.append(f"{kind}: {r['ms']:7.2f} ms {r['peak_mb']:7.0f} MB")
            print(" | ".join(row), flush=True)
    else:
        print("\nCUDA not available: gsplat row skipped")
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other processes make 2-thread timings erratic)")


if __name__ == "__main__":
    main()
