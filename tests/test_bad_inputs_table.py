"""Every bad input of tests/bad_input_cases.py through the real CLI (in-process): exit code 2, exactly
one error line on stderr naming the file, no traceback, nothing on stdout, nothing new on disk."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from bad_input_cases import CASES, snapshot
from hm_talker.cli import main

MOUNT_SIZES = {"ro": "1m", "full": "256k"}


@pytest.fixture
def workspace(tmp_path, request):
    ws = tmp_path / "ws"
    ws.mkdir()
    case = request.param
    mounted = None
    if case.mount:
        mnt = ws / "mnt"
        mnt.mkdir()
        opts = f"size={MOUNT_SIZES[case.mount]}" + (",ro" if case.mount == "ro" else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()}")
        mounted = mnt
    yield ws, case
    if mounted is not None:
        subprocess.run(["umount", str(mounted)], check=False)


def _point_library_log_handlers_at(stream) -> None:
    """Lightning attaches a stream handler to the sys.stderr of the moment it is first imported,
    which under pytest is an earlier test's (closed) capture; write to this test's stderr instead."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        for h in logging.getLogger(name).handlers:
            if type(h) is logging.StreamHandler:
                h.stream = stream  # (setStream would flush the closed one first)


def fixtures_for(case, request) -> dict:
    names = {"clip": "synthetic_clip", "ident": "identity64", "ckpt": "trained_ckpt"}
    fx = {}
    for need in case.needs:
        value = request.getfixturevalue(names[need])
        fx[need] = value.path if need == "clip" else value
    return fx


@pytest.mark.parametrize("workspace", CASES, ids=[c.id for c in CASES], indirect=True)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(workspace, request, capsys, caplog):
    ws, case = workspace
    argv, expected, name = case.setup(ws, fixtures_for(case, request))
    before = snapshot(ws)
    capsys.readouterr()
    _point_library_log_handlers_at(sys.stderr)
    with caplog.at_level(logging.WARNING, logger="hm_talker"):
        code = main(["-q", *argv])
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("hm-talker: error")]
    assert code == 2, (code, captured.err[-2000:])
    assert len(errors) == 1 and expected in errors[0] and name in errors[0], lines[-5:]
    assert "Traceback" not in captured.err and captured.out == "", (captured.err[-3000:], captured.out[-500:])
    assert snapshot(ws) == before, "files were added, removed or changed"
    # no flood: a handful of warnings at most (the per-sample corrupt warning is rate-limited)
    assert sum(r.levelno >= logging.WARNING for r in caplog.records) <= 8


def test_preprocess_into_own_finished_identity_is_allowed(identity64, tmp_path, synthetic_clip):
    """The rule refuses foreign folders only: re-running into our own identity is a no-op."""
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.safe_output import MARKER, read_marker

    files = read_marker(identity64)
    assert files and "manifest.json" in files and "features.npz" in files and MARKER not in files
    before = snapshot(identity64)
    m = preprocess([synthetic_clip.path], identity64, PreprocessConfig(size=64, shard_frames=16))
    assert m["num_frames"] == 150 and snapshot(identity64) == before


def test_preprocess_restart_deletes_only_its_own_shards(synthetic_clip, tmp_path):
    """A different earlier attempt's state: only the shards it planned are deleted, a user's tar stays."""
    import json

    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess

    out = tmp_path / "ident"
    (out / ".work").mkdir(parents=True)
    (out / ".work" / "state.json").write_text(json.dumps(
        {"fingerprint": "other", "plan": [{"name": "train-000009.tar"}, {"name": "../escape.tar"}]}))
    (out / "train-000009.tar").write_bytes(b"old attempt")
    (tmp_path / "escape.tar").write_bytes(b"not ours")
    (out / "users.tar").write_bytes(b"not ours either")
    m = preprocess([synthetic_clip.path], out, PreprocessConfig(size=64, shard_frames=200))
    assert not (out / "train-000009.tar").exists()
    assert (tmp_path / "escape.tar").read_bytes() == b"not ours"
    assert (out / "users.tar").read_bytes() == b"not ours either"
    assert len(m["shards"]["train"]) == 1


def test_corrupt_warnings_are_counted_then_summarised(identity64, tmp_path, caplog):
    """6 corrupt train images in an epoch of 136: the epoch completes; 2 warnings one by one, then one
    summary line with the count; with a limit of 2 % of the epoch the same data is an error."""
    import json
    import shutil

    from bad_input_cases import rewrite_shard
    from datamodules.talking_head import TalkingHeadDataModule
    from hm_talker.errors import InputError

    root = Path(shutil.copytree(identity64, tmp_path / "ident"))
    shard = json.loads((root / "manifest.json").read_text())["shards"]["train"][0]["name"]
    bad = {f"{i:06d}.image.jpg" for i in range(6)}
    rewrite_shard(root / shard, lambda n, b: b"junk" if n in bad else b)
    dm = TalkingHeadDataModule(str(root), batch_size=2, num_workers=0, corrupt_warnings=2)
    dm.setup("fit")
    with caplog.at_level(logging.WARNING, logger="hm_talker"):
        batches = list(dm.train_pipeline())
    assert len(batches) == 136 // 2  # the epoch is complete (short readers repeat recent samples)
    msgs = [r.getMessage() for r in caplog.records]
    assert len([m for m in msgs if m.startswith("skipped a corrupt sample")]) == 2, msgs
    assert len([m for m in msgs if m.startswith("skipped 6 corrupt sample(s) in this pass")]) == 1, msgs
    strict = TalkingHeadDataModule(str(root), batch_size=2, num_workers=0, max_corrupt_fraction=0.02)
    strict.setup("fit")
    with pytest.raises(InputError, match="3 corrupt sample"):  # 3 > 2 % of 136
        list(strict.train_pipeline())


def test_stored_config_never_holds_a_resolved_secret(identity64, tmp_path, monkeypatch):
    """Interpolations are refused before anything is resolved, so no secret reaches summary / W&B."""
    from hm_talker.errors import InputError
    from hm_talker.config.fit import load_config

    monkeypatch.setenv("HM_TALKER_TEST_SECRET", "s3cr3t")
    for item in ["run.group=${oc.env:HM_TALKER_TEST_SECRET}", "run.tags=[${oc.env:HM_TALKER_TEST_SECRET}]"]:
        with pytest.raises(InputError, match="not allowed"):
            load_config(None, [f"data.root={identity64}", item])
