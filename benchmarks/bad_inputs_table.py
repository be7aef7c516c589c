"""Print what each bad input of tests/bad_input_cases.py does: exit code, the error line, files left.

Runs every case in-process through `hm_talker.cli.main` of whichever checkout is first on the path,
so the same table can be taken before and after a change:

    python benchmarks/bad_inputs_table.py build FIXTURES            # synthetic clip, identity, checkpoint
    PYTHONPATH=OLD python benchmarks/bad_inputs_table.py run FIXTURES before.json
    PYTHONPATH=NEW python benchmarks/bad_inputs_table.py run FIXTURES after.json
    python benchmarks/bad_inputs_table.py table before.json after.json

An uncaught exception counts as exit 1 with its last traceback line (what the shell would show); a
case still running after --hang-seconds is stopped and reported as a hang, with the number of
warnings it logged by then.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


class Hang(BaseException):
    pass


class _CurrentStderr:  # log records go to whatever sys.stderr is at the moment
    def write(self, s):
        sys.stderr.write(s)

    def flush(self):
        pass


class _Count(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.n = 0

    def emit(self, record):
        self.n += 1


def build(fx: Path) -> None:
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip
    from hm_talker.training.fit import fit

    fx.mkdir(parents=True, exist_ok=True)
    clip = make_synthetic_clip(fx / "talker.mp4", seconds=6.0, size=256, seed=0)
    preprocess([clip.path], fx / "synth64", PreprocessConfig(size=64, shard_frames=16))
    fit(None, [f"data.root={fx / 'synth64'}", f"run.dir={fx / 'runs'}", "run.name=brief", "trainer.max_steps=20",
               "model.gaussians.num_face=300", "model.gaussians.num_mouth=50", "data.num_workers=0",
               "data.batch_size=2"], False)


def run(fx: Path, out_json: Path, hang_seconds: int, only: str | None, start: str | None = None) -> None:
    from bad_input_cases import CASES, snapshot
    from hm_talker.cli import main

    logging.basicConfig(level=logging.INFO, stream=_CurrentStderr(), format="hm-talker: %(levelname)s: %(message)s")
    counter = _Count()
    logging.getLogger("hm_talker").addHandler(counter)
    fixtures = {"clip": fx / "talker.mp4", "ident": fx / "synth64", "ckpt": fx / "runs" / "brief" / "checkpoints" / "last.ckpt"}

    def on_alarm(signum, frame):
        raise Hang()

    signal.signal(signal.SIGALRM, on_alarm)
    rows = {}
    started = start is None
    for case in CASES:
        started = started or case.id == start
        if not started or (only and only not in case.id):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp) / "ws"
            ws.mkdir()
            mnt = None
            if case.mount:
                mnt = ws / "mnt"
                mnt.mkdir()
                opts = {"ro": "size=1m,ro", "full": "size=256k"}[case.mount]
                if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)]).returncode:
                    rows[case.id] = {"code": None, "message": "skipped (cannot mount a tmpfs)"}
                    continue
            try:
                argv, _, _ = case.setup(ws, {k: fixtures[k] for k in case.needs})
                before = snapshot(ws)
                err, out = io.StringIO(), io.StringIO()
                counter.n = 0
                signal.alarm(hang_seconds)
                try:
                    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                        code = main(["-q", *argv])
                    message = next((ln for ln in err.getvalue().splitlines() if "error" in ln),
                                   (out.getvalue().strip().splitlines() or [""])[-1])
                    if message and message in out.getvalue():
                        message = "(stdout) " + message
                except Hang:
                    code, message = "running", (f"accepted: still running after {hang_seconds} s "
                                                f"({counter.n} warnings logged), stopped")
                except SystemExit as exc:
                    code, message = exc.code, "SystemExit"
                except BaseException as exc:  # what a user sees: a traceback and exit code 1
                    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
                    code, message = 1, "Traceback: " + last
                finally:
                    signal.alarm(0)
                changed = snapshot(ws) != before
                rows[case.id] = {"code": code, "message": message.replace(str(ws), "WS")[:160],
                                 "disk_changed": changed}
            finally:
                if mnt is not None:
                    subprocess.run(["umount", str(mnt)])
        print(case.id, rows[case.id], file=sys.__stderr__, flush=True)
    out_json.write_text(json.dumps(rows, indent=1))


def table(before: Path, after: Path) -> None:
    b, a = json.loads(before.read_text()), json.loads(after.read_text())
    print("| case | before: exit | before: message | files changed | after: exit | after: message | files changed |")
    print("|---|---|---|---|---|---|---|")
    for cid in a:
        x, y = b.get(cid, {}), a[cid]
        cell = lambda r: (str(r.get("code")), (r.get("message") or "").replace("|", "\\|"),
                          "yes" if r.get("disk_changed") else "no")
        print("| " + " | ".join([cid, *cell(x), *cell(y)]) + " |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("build")
    s.add_argument("fixtures", type=Path)
    s = sub.add_parser("run")
    s.add_argument("fixtures", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--hang-seconds", type=int, default=90)
    s.add_argument("--only", default=None, help="only cases whose id contains this")
    s.add_argument("--start", default=None, help="start at the case with this id")
    s = sub.add_parser("table")
    s.add_argument("before", type=Path)
    s.add_argument("after", type=Path)
    args = p.parse_args()
    if args.cmd == "build":
        build(args.fixtures)
    elif args.cmd == "run":
        run(args.fixtures, args.out, args.hang_seconds, args.only, args.start)
    else:
        table(args.before, args.after)
