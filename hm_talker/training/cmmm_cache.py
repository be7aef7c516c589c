"""The CMMM cache: a stage-1 CMMM trained once and reused by every run that would train the same one.

An entry lives in `run.dir/cmmm-cache/<key>/` (last.ckpt and stage1.json), where the key is a hash of
what determines the weights: the identities (their manifest.json and features.npz bytes), the stage-1
config (the `cmmm` section, the audio encoder, the explicit AUs, the window, the batch size, the steps)
and the seed. Not in it: the device, the loader workers, anything of stage 2 (SFP, the renderer), so the
runs of an SFP sweep over one identity and seed share one entry.

Who trains: in a job of several processes only rank zero; the others wait for the entry (stage 1 once
per job). Across jobs (the tasks of a sweep, or a resubmitted job beside a running one) the entry's
folder lock decides: the first process takes it and trains, a second finds it held and waits for
last.ckpt (or takes the lock over when its holder died on this host, see hm_talker.output_lock). The
checkpoint appears atomically (written under a temporary name, then renamed), so a reader never sees
half of it. A failed training leaves `failed.txt` for the waiting ranks of its job to report; the next
process that takes the lock removes it and tries again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from hm_talker.errors import InputError
from hm_talker.safe_output import write_text_atomic

log = logging.getLogger("hm_talker")

CACHE = "cmmm-cache"  # run.dir/CACHE/<key>/
CKPT, META, FAILED = "last.ckpt", "stage1.json", "failed.txt"
POLL_S = 2.0  # seconds between looks at an entry another process is training


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stage1_settings(stage1_cfg) -> dict:
    """The settings that determine a stage-1 CMMM's weights (a CMMMFitConfig, as `stage1.stage1_config` builds
    it): the `cmmm` section but stage 2's fields, the audio encoder, the explicit AUs, the data settings but
    the identities and loader workers, the steps and the seed."""
    from dataclasses import asdict

    c = asdict(stage1_cfg)
    cmmm = {k: v for k, v in c["cmmm"].items() if k not in ("ckpt", "freeze")}  # stage 2's, not stage 1's
    data = {k: v for k, v in c["data"].items() if k not in ("roots", "num_workers")}
    return {"cmmm": cmmm, "audio": c["audio"], "explicit_aus": c["explicit_aus"], "data": data,
            "steps": c["trainer"]["max_steps"], "seed": c["seed"]}


def settings_hash(settings: dict, length: int) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:length]


def stage1_key(stage1_cfg) -> tuple[str, dict]:
    """(key, what it hashes) of a stage-1 config: its settings and the identities' bytes."""
    identities = [{"manifest": _file_digest(Path(r) / "manifest.json"),
                   "features": _file_digest(Path(r) / "features.npz")} for r in stage1_cfg.data.roots]
    inputs = {"identities": identities, **stage1_settings(stage1_cfg)}
    return settings_hash(inputs, 16), inputs


def entry_dir(run_root: Path, key: str) -> Path:
    return Path(run_root) / CACHE / key


def cached_stage1(stage1_cfg, run_root: Path, rank: int, timeout_s: float, train, should_stop=None) -> Path:
    """The checkpoint of this stage 1 from the cache under `run_root` (run.dir), trained here when this
    process is rank zero and nobody has it yet; `train(cfg, ckpt_path) -> metrics` trains and saves.
    Other ranks (and processes finding the entry locked) wait up to `timeout_s` seconds, or until
    `should_stop()` (the requeue signal: `preemption.Preempted`)."""
    from hm_talker.output_lock import OutputLock
    from hm_talker.training.preemption import Preempted

    key, inputs = stage1_key(stage1_cfg)
    entry = entry_dir(run_root, key)
    ckpt = entry / CKPT
    if ckpt.is_file():
        log.info("CMMM stage 1: reusing %s", entry)
        return ckpt
    deadline = time.monotonic() + timeout_s
    while True:
        if rank == 0:
            lock = OutputLock(entry, "cmmm stage 1", what="run.dir")
            try:
                lock.acquire()
            except InputError:
                lock = None  # another process trains it: wait below
            if lock is not None:
                try:
                    if not ckpt.is_file():  # (it may have appeared while we took the lock)
                        _train_entry(stage1_cfg, entry, key, inputs, train)
                    return ckpt
                finally:
                    lock.release()
        if ckpt.is_file():
            log.info("CMMM stage 1: reusing %s (trained by another process)", entry)
            return ckpt
        failed = entry / FAILED
        if rank != 0 and failed.is_file():
            raise InputError(entry, f"CMMM stage 1 failed on rank 0: {failed.read_text().strip()}")
        if should_stop is not None and should_stop():
            raise Preempted("stopped waiting for CMMM stage 1 (requeue signal)")
        if time.monotonic() > deadline:
            raise InputError(entry, f"CMMM stage 1 did not appear within {timeout_s:.0f} s "
                                    "(cmmm.wait_timeout_s): is the process training it still running?")
        time.sleep(POLL_S)


def _train_entry(stage1_cfg, entry: Path, key: str, inputs: dict, train) -> None:
    from hm_talker.training.preemption import Preempted

    (entry / FAILED).unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        metrics = train(stage1_cfg, entry / CKPT)  # atomic: a temporary name, then renamed
    except Preempted:
        raise  # not a failure: the waiting ranks were signalled too, the requeued job trains it
    except BaseException as exc:
        write_text_atomic(entry / FAILED, f"{type(exc).__name__}: {exc}\n")  # a waiting rank reads the cause too
        raise
    meta = {"key": key, "inputs": inputs, "metrics": metrics, "seconds": round(time.perf_counter() - start, 1),
            "roots": list(stage1_cfg.data.roots)}
    write_text_atomic(entry / META, json.dumps(meta, indent=2, default=str))
