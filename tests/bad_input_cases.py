"""The table of bad inputs: each case builds real files in a workspace and gives the command line.

Shared by tests/test_bad_inputs_table.py (runs each in-process and asserts exit 2, one stderr line
naming the file, nothing new on disk) and by benchmarks/bad_inputs_table.py (runs each as a real
process against any checkout and prints exit code and message: the before/after record).
Each setup(ws, fx) gets an empty workspace folder and the fixtures it names in `needs`, and returns
(argv, expected text in the error line, file name the line must contain).
"""
from __future__ import annotations

import io
import json
import pickle
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


@dataclass
class Case:
    id: str
    setup: Callable  # (ws: Path, fx: dict) -> (argv, expected substring, name the line must contain)
    needs: tuple[str, ...] = ()  # fixtures: "clip" (synthetic mp4), "ident" (64 px identity), "ckpt"
    mount: str = ""  # "ro": ws/mnt is a read-only tmpfs; "full": ws/mnt is a tiny tmpfs (a full disk)
    notes: str = ""
    keep: tuple[str, ...] = field(default_factory=tuple)


CASES: list[Case] = []


def case(id, needs=(), mount="", notes=""):
    def deco(fn):
        CASES.append(Case(id, fn, tuple(needs), mount, notes))
        return fn
    return deco


# ----------------------------------------------------------------------------- media
def testsrc(path: Path, seconds=2.0, audio=True, size="160x120") -> Path:
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=300:duration={seconds}", "-shortest"]
    else:
        args += ["-an"]
    ffmpeg(*args, "-pix_fmt", "yuv420p", str(path))
    return path


def nan_wav(path: Path, seconds=2.0) -> Path:
    y = (0.3 * np.sin(np.arange(int(16000 * seconds)) * 0.1)).astype(np.float32)
    y[1000:1100] = np.nan
    sf.write(path, y, 16000, subtype="FLOAT")
    return path


def user_files(d: Path) -> Path:
    """A user's folder: an archive and a sound file that a careless tool would delete / overwrite."""
    d.mkdir(parents=True, exist_ok=True)
    with tarfile.open(d / "photos.tar", "w") as tar:
        info = tarfile.TarInfo("a.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    (d / "audio.wav").write_bytes(b"my recording")
    return d


def copy_identity(fx, ws: Path) -> Path:
    return Path(shutil.copytree(fx["ident"], ws / "ident"))


def rewrite_shard(path: Path, change: Callable[[str, bytes], bytes]) -> None:
    """Rewrite the members of a shard through change(member name, bytes) -> bytes."""
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar if m.isfile()]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for m, data in members:
            data = change(m.name, data)
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))


def fit_argv(fx, ws, *extra, root=None):
    return ["fit", f"data.root={root or fx['ident']}", f"run.dir={ws / 'runs'}", "trainer.max_steps=5",
            "model.gaussians.num_face=300", "model.gaussians.num_mouth=50", "data.num_workers=0",
            "data.batch_size=2", *extra]


# ----------------------------------------------------------------------------- preprocess
PRE_MEDIA = {
    "missing.mp4": ("no such file", None),
    "garbage.mp4": ("unreadable or truncated", lambda p: p.write_bytes(np.random.default_rng(0).bytes(50_000))),
    "truncated.mp4": ("unreadable or truncated",
                      lambda p: p.write_bytes(testsrc(p.with_name("whole.mp4")).read_bytes()[:20_000])),
    "audio_only.m4a": ("no video stream", lambda p: ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=2", str(p))),
    "silent_film.mp4": ("no sound track", lambda p: testsrc(p, audio=False)),
    "short.mp4": ("clip too short", lambda p: testsrc(p, seconds=0.2)),
    "noface.mp4": ("no face found in any frame", lambda p: testsrc(p)),
}


def _media_case(name, problem, make):
    def setup(ws, fx):
        (ws / "in").mkdir()
        if make:
            make(ws / "in" / name)
        return ["preprocess", str(ws / "in" / name), "--out", str(ws / "out"), "--size", "64"], problem, name
    case(f"preprocess-{name}")(setup)


for _n, (_p, _m) in PRE_MEDIA.items():
    _media_case(_n, _p, _m)


@case("preprocess-nan-in-video-sound-track")
def _(ws, fx):
    (ws / "in").mkdir()
    testsrc(ws / "in" / "v.mp4", audio=False)
    nan_wav(ws / "in" / "nan.wav")
    ffmpeg("-i", str(ws / "in" / "v.mp4"), "-i", str(ws / "in" / "nan.wav"), "-c:v", "copy", "-c:a", "pcm_f32le",
           "-shortest", str(ws / "in" / "nan_sound.mkv"))
    (ws / "in" / "v.mp4").unlink()
    (ws / "in" / "nan.wav").unlink()
    return ["preprocess", str(ws / "in" / "nan_sound.mkv"), "--out", str(ws / "out")], "non-finite", "nan_sound.mkv"


@case("preprocess-nan-in-audio-file")
def _(ws, fx):
    (ws / "in").mkdir()
    testsrc(ws / "in" / "v.mp4")
    nan_wav(ws / "in" / "nan.wav")
    return ["preprocess", str(ws / "in" / "v.mp4"), "--audio", str(ws / "in" / "nan.wav"), "--out",
            str(ws / "out")], "non-finite", "nan.wav"


@case("preprocess-unreadable-audio-file")
def _(ws, fx):
    (ws / "in").mkdir()
    testsrc(ws / "in" / "v.mp4")
    (ws / "in" / "bad.wav").write_bytes(b"RIFF not really")
    return ["preprocess", str(ws / "in" / "v.mp4"), "--audio", str(ws / "in" / "bad.wav"), "--out",
            str(ws / "out")], "unreadable audio", "bad.wav"


@case("preprocess-out-is-a-users-folder", needs=("clip",), notes="was: deletes *.tar*, overwrites audio.wav, exit 0")
def _(ws, fx):
    user_files(ws / "Downloads")
    return ["preprocess", str(fx["clip"]), "--out", str(ws / "Downloads"), "--size", "64"], \
        "did not write", "Downloads"


@case("preprocess-out-is-a-file", needs=("clip",))
def _(ws, fx):
    (ws / "out.txt").write_text("notes")
    return ["preprocess", str(fx["clip"]), "--out", str(ws / "out.txt"), "--size", "64"], \
        "not a directory", "out.txt"


@case("preprocess-out-read-only", needs=("clip",), mount="ro")
def _(ws, fx):
    return ["preprocess", str(fx["clip"]), "--out", str(ws / "mnt" / "ident"), "--size", "64"], \
        "cannot write", "mnt"


@case("preprocess-disk-full", needs=("clip",), mount="full", notes="a 256 KiB tmpfs")
def _(ws, fx):
    return ["preprocess", str(fx["clip"]), "--out", str(ws / "mnt" / "ident"), "--size", "64"], \
        "No space left on device", "mnt"


@case("preprocess-out-malformed-manifest", needs=("clip",))
def _(ws, fx):
    (ws / "out").mkdir()
    (ws / "out" / "manifest.json").write_text('{"format": "hm-talker-shards/1", ')
    return ["preprocess", str(fx["clip"]), "--out", str(ws / "out"), "--size", "64"], "malformed", "manifest.json"


@case("preprocess-unknown-set-key", needs=("clip",))
def _(ws, fx):
    return ["preprocess", str(fx["clip"]), "--out", str(ws / "o"), "--set", "no_such_key=1"], \
        "unknown config key", "no_such_key"


for _kv, _key in [("val_fraction=1.5", "val_fraction"), ("size=0", "size"), ("fps=0", "fps"),
                  ("fps=-25", "fps"), ("shard_frames=0", "shard_frames"), ("jpeg_quality=300", "jpeg_quality")]:
    def _set(ws, fx, kv=_kv, key=_key):
        return ["preprocess", str(fx["clip"]), "--out", str(ws / "o"), "--set", kv], "out of range", key
    case(f"preprocess-set-{_kv}", needs=("clip",))(_set)


@case("preprocess-set-resolver", needs=("clip",))
def _(ws, fx):
    return ["preprocess", str(fx["clip"]), "--out", str(ws / "o"), "--set", "audio_model=${oc.env:HOME}"], \
        "not allowed", "audio_model"


# ----------------------------------------------------------------------------- fit
for _kv, _key, _why in [
    ("run.name=../../escaped", "run.name", "one name"), ("run.name=/tmp/abs", "run.name", "one name"),
    ("run.name=a:b", "run.name", "one name"), ("trainer.max_steps=-1", "trainer.max_steps", "out of range"),
    ("trainer.max_steps=-100", "trainer.max_steps", "out of range"), ("data.batch_size=0", "data.batch_size", "out of range"),
    ("data.num_workers=-1", "data.num_workers", "out of range"), ("trainer.val_every=0", "trainer.val_every", "out of range"),
    ("trainer.checkpoint_every=-5", "trainer.checkpoint_every", "out of range"),
    ("trainer.accelerator=tpu9", "trainer.accelerator", "not one of"),
    ("optim.lr_means=0", "optim.lr_means", "positive"), ("loss.l1=-1", "loss.l1", "out of range"),
    ("cmmm.loss.speech_l2=-1", "cmmm.loss.speech_l2", "out of range"),
    ("run.group=${oc.env:HOME}", "run.group", "not allowed"),
]:
    def _fit(ws, fx, kv=_kv, key=_key, why=_why):
        return fit_argv(fx, ws, kv), why, key
    case(f"fit-{_kv}", needs=("ident",))(_fit)


@case("fit-cmmm-negative-loss-weight", needs=("ident",), notes="was: accepted, and trained against its own loss")
def _(ws, fx):
    return ["fit-cmmm", f"data.roots=[{fx['ident']}]", f"run.dir={ws / 'runs'}", "trainer.max_steps=5",
            "cmmm.loss.align=-0.5"], "out of range", "cmmm.loss.align"


@case("fit-config-with-env-resolver", needs=("ident",), notes="was: the secret is stored in summary.json")
def _(ws, fx):
    (ws / "leak.yaml").write_text("run:\n  group: ${oc.env:HOME}\n")
    return ["fit", str(ws / "leak.yaml"), *fit_argv(fx, ws)[1:]], "not allowed", "leak.yaml"


@case("fit-yaml-syntax-error", needs=("ident",))
def _(ws, fx):
    (ws / "broken.yaml").write_text("trainer:\n  max_steps: [1, 2\n")
    return ["fit", str(ws / "broken.yaml"), *fit_argv(fx, ws)[1:]], "bad YAML", "broken.yaml"


@case("fit-yaml-python-tag", needs=("ident",))
def _(ws, fx):
    (ws / "evil.yaml").write_text('run: !!python/object/apply:os.system ["echo pwned"]\n')
    return ["fit", str(ws / "evil.yaml"), *fit_argv(fx, ws)[1:]], "bad YAML", "evil.yaml"


@case("fit-binary-config", needs=("ident",))
def _(ws, fx):
    (ws / "blob.yaml").write_bytes(bytes(range(256)) * 4)
    return ["fit", str(ws / "blob.yaml"), *fit_argv(fx, ws)[1:]], "binary", "blob.yaml"


@case("fit-malformed-manifest", needs=("ident",))
def _(ws, fx):
    root = copy_identity(fx, ws)
    (root / "manifest.json").write_text("{not json")
    return fit_argv(fx, ws, root=root), "malformed", "manifest.json"


@case("fit-foreign-manifest", needs=("ident",))
def _(ws, fx):
    root = copy_identity(fx, ws)
    (root / "manifest.json").write_text(json.dumps([{"name": "x"}]))
    return fit_argv(fx, ws, root=root), "not an hm-talker manifest", "manifest.json"


@case("fit-manifest-missing-keys", needs=("ident",))
def _(ws, fx):
    root = copy_identity(fx, ws)
    m = json.loads((root / "manifest.json").read_text())
    del m["shards"]["val"]
    (root / "manifest.json").write_text(json.dumps(m))
    return fit_argv(fx, ws, root=root), "malformed manifest", "manifest.json"


@case("fit-manifest-shard-path-escapes", needs=("ident",))
def _(ws, fx):
    root = copy_identity(fx, ws)
    m = json.loads((root / "manifest.json").read_text())
    m["shards"]["train"][0]["name"] = "../../etc/passwd"
    (root / "manifest.json").write_text(json.dumps(m))
    return fit_argv(fx, ws, root=root), "plain file name", "manifest.json"


@case("fit-nan-in-features", needs=("ident",))
def _(ws, fx):
    root = copy_identity(fx, ws)
    with np.load(root / "features.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["extrinsics"][3, 0, 3] = np.nan
    np.savez(root / "features.npz", **arrays)
    return fit_argv(fx, ws, root=root), "non-finite", "features.npz"


@case("fit-all-train-images-corrupt", needs=("ident",), notes="was: never ends, a warning per sample")
def _(ws, fx):
    root = copy_identity(fx, ws)
    for s in json.loads((root / "manifest.json").read_text())["shards"]["train"]:
        rewrite_shard(root / s["name"], lambda name, b: b"not an image" if name.endswith(".jpg") else b)
    return fit_argv(fx, ws, root=root), "corrupt sample", "ident"


@case("fit-resume-truncated-checkpoint", needs=("ident", "ckpt"))
def _(ws, fx):
    d = ws / "runs" / "r" / "checkpoints"
    d.mkdir(parents=True)
    (d / "last.ckpt").write_bytes(Path(fx["ckpt"]).read_bytes()[:4000])
    return [*fit_argv(fx, ws, "run.name=r"), "--resume"], "corrupt or unsafe", "last.ckpt"


class Payload:  # a pickled object whose loading would run code (weights_only refuses it)
    def __reduce__(self):
        return (print, ("code ran",))


@case("fit-resume-unsafe-checkpoint", needs=("ident",))
def _(ws, fx):
    d = ws / "runs" / "r" / "checkpoints"
    d.mkdir(parents=True)
    import torch

    torch.save({"state_dict": {}, "x": Payload()}, d / "last.ckpt", pickle_protocol=pickle.DEFAULT_PROTOCOL)
    return [*fit_argv(fx, ws, "run.name=r"), "--resume"], "corrupt or unsafe", "last.ckpt"


@case("fit-run-dir-is-a-users-folder", needs=("ident",))
def _(ws, fx):
    user_files(ws / "runs" / "mine")
    return fit_argv(fx, ws, "run.name=mine"), "did not write", "mine"


# ----------------------------------------------------------------------------- infer
def speech(ws: Path, seconds=1.0) -> Path:
    from hm_talker.synthetic import make_synthetic_speech

    (ws / "in").mkdir(exist_ok=True)
    make_synthetic_speech(ws / "in" / "s.wav", seconds=seconds, seed=1)
    return ws / "in" / "s.wav"


@case("infer-batch-size-0", needs=("ckpt",))
def _(ws, fx):
    return ["infer", "--ckpt", str(fx["ckpt"]), "--audio", str(speech(ws)), "--out", str(ws / "o.mp4"),
            "--batch-size", "0"], "positive integer", "--batch-size"


@case("infer-out-is-a-directory", needs=("ckpt",), notes="was: fails only after the whole render")
def _(ws, fx):
    (ws / "outdir").mkdir()
    return ["infer", "--ckpt", str(fx["ckpt"]), "--audio", str(speech(ws)), "--out", str(ws / "outdir")], \
        "is a directory", "outdir"


@case("infer-out-read-only", needs=("ckpt",), mount="ro")
def _(ws, fx):
    return ["infer", "--ckpt", str(fx["ckpt"]), "--audio", str(speech(ws)), "--out", str(ws / "mnt" / "o.mp4")], \
        "cannot write", "mnt"


@case("infer-truncated-checkpoint")
def _(ws, fx):
    (ws / "bad.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    return ["infer", "--ckpt", str(ws / "bad.ckpt"), "--audio", str(speech(ws)), "--out", str(ws / "o.mp4")], \
        "corrupt or unsafe", "bad.ckpt"


@case("infer-corrupt-shard-sample", needs=("ident", "ckpt"), notes="fit skips such samples")
def _(ws, fx):
    root = copy_identity(fx, ws)
    first = json.loads((root / "manifest.json").read_text())["shards"]["train"][0]["name"]
    rewrite_shard(root / first, lambda name, b: b"garbage" if name == "000000.image.jpg" else b)
    return ["infer", "--ckpt", str(fx["ckpt"]), "--audio", str(speech(ws)), "--out", str(ws / "o.mp4"),
            "--data", str(root)], "corrupt sample", first


# ----------------------------------------------------------------------------- evaluate
@case("evaluate-out-is-a-file")
def _(ws, fx):
    (ws / "in").mkdir()
    a = testsrc(ws / "in" / "a.mp4", seconds=1)
    (ws / "report").write_text("mine")
    return ["evaluate", "--pred", str(a), "--target", str(a), "--out", str(ws / "report")], "not a directory", "report"


@case("evaluate-out-is-a-users-folder")
def _(ws, fx):
    (ws / "in").mkdir()
    a = testsrc(ws / "in" / "a.mp4", seconds=1)
    user_files(ws / "Documents")
    return ["evaluate", "--pred", str(a), "--target", str(a), "--out", str(ws / "Documents")], \
        "did not write", "Documents"


@case("evaluate-pair-missing-target")
def _(ws, fx):
    (ws / "in").mkdir()
    a = testsrc(ws / "in" / "a.mp4", seconds=1)
    return ["evaluate", "--pred", str(a), "--target", str(ws / "in" / "nope.mp4"), "--out", str(ws / "ev")], \
        "no such file", "nope.mp4"


@case("evaluate-cross-bad-audio", needs=("ckpt",), notes="was: leaves an empty OUT")
def _(ws, fx):
    (ws / "in").mkdir()
    (ws / "in" / "speech.wav").write_bytes(b"RIFF not really")
    return ["evaluate", "--ckpt", str(fx["ckpt"]), "--audio", str(ws / "in" / "speech.wav"), "--out",
            str(ws / "ev")], "unreadable audio", "speech.wav"


# ----------------------------------------------------------------------------- compare
def run_with_summary(ws: Path, text: bytes | str) -> Path:
    d = ws / "runs" / "a"
    d.mkdir(parents=True)
    (d / "summary.json").write_bytes(text.encode() if isinstance(text, str) else text)
    return d / "summary.json"


@case("compare-malformed-summary")
def _(ws, fx):
    run_with_summary(ws, '{"metrics": {"psnr": 1.0}')
    return ["compare", str(ws / "runs"), "--out", str(ws / "cmp")], "malformed", "summary.json"


@case("compare-binary-summary")
def _(ws, fx):
    run_with_summary(ws, bytes(range(256)) * 8)
    return ["compare", str(ws / "runs"), "--out", str(ws / "cmp")], "binary", "summary.json"


@case("compare-summary-wrong-types")
def _(ws, fx):
    run_with_summary(ws, json.dumps({"metrics": {"psnr": 1.0}, "tags": 5, "config": "x"}))
    return ["compare", str(ws / "runs"), "--out", str(ws / "cmp")], "must be a list", "summary.json"


@case("compare-missing-run")
def _(ws, fx):
    return ["compare", str(ws / "nope"), "--out", str(ws / "cmp")], "no such run directory", "nope"


@case("compare-out-is-a-file")
def _(ws, fx):
    run_with_summary(ws, json.dumps({"metrics": {"psnr": 1.0}}))
    (ws / "cmp.md").write_text("mine")
    return ["compare", str(ws / "runs"), "--out", str(ws / "cmp.md")], "not a directory", "cmp.md"


# --- issue 19 / 16: sweep plans
# A sweep plan is counted, then every run checked (fit's loader and validator, names, SFP sequences)
# before a plan file or a run folder exists: exit 2, one line naming the spec (or the key), nothing
# written. The `fit` cases: the same SFP rules refuse a single run before it reads its data.
def sweep_spec(ws: Path, text: str) -> Path:
    (ws / "in").mkdir()
    (ws / "in" / "spec.yaml").write_text(text)
    return ws / "in" / "spec.yaml"


def sweep_argv(ws: Path, spec: Path, *extra: str, launcher: str = "local") -> list[str]:
    return ["sweep", str(spec), f"data.root={ws / 'ident'}", f"run.dir={ws / 'runs'}", *extra,
            *(["--dry-run"] if launcher == "dry-run" else ["--launcher", launcher])]


@case("sweep-grid-over-max-runs", notes="was: 4 axes x 100 values: no output, 3.3 GB within a minute")
def _(ws, fx):
    axes = "".join(f"  loss.{k}: {{values: {[i / 1000 for i in range(100)]}}}\n" for k in ("dssim", "l1", "alpha", "lpips"))
    spec = sweep_spec(ws, "name: big\nmethod: grid\nparameters:\n" + axes)
    return sweep_argv(ws, spec, launcher="dry-run"), "100000000 runs", "spec.yaml"


@case("sweep-unknown-parameter-key", notes="was: dry run exit 0, every run refused later on SLURM")
def _(ws, fx):
    spec = sweep_spec(ws, "name: s\nmethod: grid\nparameters:\n  loss.nope: {values: [0.0, 0.2]}\n")
    return sweep_argv(ws, spec, launcher="dry-run"), "unknown config key loss.nope", "spec.yaml"


@case("sweep-unknown-override", notes="was: dry run exit 0")
def _(ws, fx):
    spec = sweep_spec(ws, "name: s\nmethod: grid\nparameters:\n  loss.dssim: {values: [0.0, 0.2]}\n")
    return sweep_argv(ws, spec, "loss.bogus=1"), "unknown config key loss.bogus", "spec.yaml"


@case("sweep-name-escapes", notes="was: dry run exit 0; the plan file went to RUN_DIR/sweeps/../../evil.json")
def _(ws, fx):
    spec = sweep_spec(ws, "name: ../../evil\nmethod: grid\nparameters:\n  loss.dssim: {values: [0.0, 0.2]}\n")
    return sweep_argv(ws, spec), "must be one name", "spec.yaml"


@case("sweep-sfp-share-the-cycle-cannot-hold", notes="was: p_measured=0.25 at period 2 trained predicted-only")
def _(ws, fx):
    spec = sweep_spec(ws, "name: s\nmethod: grid\nparameters:\n  sfp.p_measured: {values: [0.5, 0.25]}\n")
    return sweep_argv(ws, spec), "sfp.p_measured=0.25 with sfp.period=2", "spec.yaml"


@case("sweep-sfp-period-under-random", notes="was: runs differing only in an unread period")
def _(ws, fx):
    spec = sweep_spec(ws, "name: s\nmethod: grid\nparameters:\n  sfp.schedule: {value: random}\n"
                          "  sfp.period: {values: [2, 4]}\n")
    return sweep_argv(ws, spec), "sfp.period=4 with sfp.schedule=random", "spec.yaml"


@case("sweep-two-runs-train-the-same", notes="alternate never reads sfp.seed: one run under two names")
def _(ws, fx):
    spec = sweep_spec(ws, "name: s\nmethod: grid\nparameters:\n  sfp.seed: {values: [0, 1]}\n")
    return sweep_argv(ws, spec), "train the same thing", "spec.yaml"


@case("fit-sfp-share-the-cycle-cannot-hold", notes="was: trains predicted-only while saying 0.25")
def _(ws, fx):
    return fit_argv(fx, ws, "sfp.p_measured=0.25", root=ws / "ident"), "not whole", "sfp.p_measured=0.25"


@case("fit-sfp-period-under-random")
def _(ws, fx):
    return fit_argv(fx, ws, "sfp.schedule=random", "sfp.period=4", root=ws / "ident"), "only the alternate", \
        "sfp.period=4"

# --- issue 19 (reliability, second round): locks, NaN sound, fps
def held_lock(folder: Path, **fields) -> Path:
    """A lock in `folder` held by a live process: this one (the runner that starts the command), on
    this host, with its real start time, so it is never taken for stale."""
    from hm_talker.output_lock import LOCK, holder_record

    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK).write_text(json.dumps({**holder_record("preprocess"), **fields}))
    return folder / LOCK


@case("preprocess-out-locked-by-a-running-preprocess", needs=("clip",),
      notes="was: both runs exit 0, the folder holds the second identity only")
def _(ws, fx):
    held_lock(ws / "out")
    return ["preprocess", str(fx["clip"]), "--out", str(ws / "out"), "--size", "64"], \
        "in use by another hm-talker run (preprocess pid", "out"


@case("preprocess-out-locked-on-another-host", needs=("clip",), notes="never taken over: pids of other hosts")
def _(ws, fx):
    held_lock(ws / "out", host="gpu-node-17", pid=4242)
    return ["preprocess", str(fx["clip"]), "--out", str(ws / "out"), "--size", "64"], \
        "on host gpu-node-17", ".hm-talker.lock"


@case("fit-run-dir-locked-by-a-running-fit", needs=("ident",), notes="was: two fits write one run dir")
def _(ws, fx):
    held_lock(ws / "runs" / "r", command="fit")
    return fit_argv(fx, ws, "run.name=r"), "in use by another hm-talker run (fit pid", "r"


@case("evaluate-out-locked-by-a-running-evaluate")
def _(ws, fx):
    (ws / "in").mkdir()
    a = testsrc(ws / "in" / "a.mp4", seconds=1)
    held_lock(ws / "ev", command="evaluate")
    return ["evaluate", "--pred", str(a), "--target", str(a), "--out", str(ws / "ev")], \
        "in use by another hm-talker run (evaluate pid", "ev"


@case("preprocess-nan-sound-in-mov-as-audio", notes="was: decoded to a constant -1.0 audio.wav, exit 0")
def _(ws, fx):
    (ws / "in").mkdir()
    testsrc(ws / "in" / "v.mp4")
    sf.write(ws / "in" / "nan.wav", np.full(32000, np.nan, np.float32), 16000, subtype="FLOAT")
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:r=25:d=2", "-i", str(ws / "in" / "nan.wav"),
           "-c:v", "libx264", "-c:a", "pcm_f32le", "-shortest", str(ws / "in" / "nan.mov"))
    (ws / "in" / "nan.wav").unlink()
    return ["preprocess", str(ws / "in" / "v.mp4"), "--audio", str(ws / "in" / "nan.mov"), "--out",
            str(ws / "out")], "non-finite", "nan.mov"


for _kv, _key in [("audio_rows_fps=0", "audio_rows_fps"), ("clip_level=0", "clip_level"),
                  ("max_clipped_fraction=2", "max_clipped_fraction"),
                  ("max_constant_fraction=-1", "max_constant_fraction")]:
    def _set19(ws, fx, kv=_kv, key=_key):
        return ["preprocess", str(fx["clip"]), "--out", str(ws / "o"), "--set", kv], "out of range", key
    case(f"preprocess-set-{_kv}", needs=("clip",))(_set19)


@case("fit-config-file-holding-a-scalar", notes="was: `Invalid loaded object type: int`, no file named")
def _(ws, fx):
    (ws / "scalar.yaml").write_text("5\n")
    return ["fit", str(ws / "scalar.yaml")], "must hold a mapping of keys", "scalar.yaml"


@case("fit-resume-past-max-steps", needs=("ident", "ckpt"),
      notes="was: exit 0, nothing trained, summary.json rewritten without a word")
def _(ws, fx):
    run = ws / "runs" / "r"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(fx["ckpt"], run / "checkpoints" / "last.ckpt")  # a step-20 checkpoint
    (run / "summary.json").write_text(json.dumps({"metrics": {"psnr_val": 20.0}}))
    return [*fit_argv(fx, ws, "run.name=r"), "--resume"], "at step 20, past trainer.max_steps=5", "last.ckpt"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its size and modification time (what 'nothing changed' means)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        st = p.lstat()
        # a folder is compared by its entries, not its mtime (a write probe touches it, changes nothing)
        out[str(p.relative_to(root))] = (True, 0, 0) if p.is_dir() else (False, st.st_size, st.st_mtime_ns)
    return out
