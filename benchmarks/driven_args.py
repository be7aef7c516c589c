"""The command line shared by the benchmarks that drive checkpoints with another speaker's video: --ckpt ...
--ref VIDEO [--seconds S] [--out DIR], and one output folder per checkpoint."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Iterator


def driven_checkpoints(doc: str, prefix: str) -> tuple[argparse.Namespace, Iterator[tuple[Path, str, Path]]]:
    """Parsed arguments and (checkpoint, its run's name, its own output folder) for each --ckpt."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, nargs="+", required=True)
    ap.add_argument("--ref", type=Path, required=True, help="a real video of another person speaking")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=None, help="where the driven videos go (default: a temp dir)")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix=prefix))

    def each() -> Iterator[tuple[Path, str, Path]]:
        for ckpt in args.ckpt:
            name = ckpt.parent.parent.name
            (out / name).mkdir(parents=True, exist_ok=True)
            yield ckpt, name, out / name

    return args, each()
