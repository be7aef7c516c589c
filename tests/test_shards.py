"""Shards read back equal to what was written; a killed run resumes to identical shards."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest

from hm_talker.preprocess import shards as sh
from hm_talker.preprocess.masks import unpack_masks


def test_write_then_read_returns_the_same_bytes(tmp_path):
    rng = np.random.default_rng(0)
    samples = [{"__key__": f"{i:06d}", "landmarks.npy": sh.encode_npy(rng.normal(size=(478, 3)).astype(np.float32)),
                "image.png": sh.encode_image(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "png"),
                "meta.json": b'{"frame": %d}' % i} for i in range(5)]
    sh.write_shard(tmp_path / "a.tar", samples)
    assert sh.read_shard(tmp_path / "a.tar") == samples
    assert not list(tmp_path.glob("*.partial"))
    # deterministic: the same samples give byte-identical tar files
    sh.write_shard(tmp_path / "b.tar", samples)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_npy_members_refuse_pickles():
    with pytest.raises(ValueError):
        sh.encode_npy(np.array([{"a": 1}], dtype=object))


def test_shard_samples_equal_the_identity_arrays(synthetic_identity):
    import json

    m = json.loads((synthetic_identity / "manifest.json").read_text())
    feats = np.load(synthetic_identity / "features.npz", allow_pickle=False)
    seen = []
    for split in ("train", "val"):
        for s in m["shards"][split]:
            samples = sh.read_shard(synthetic_identity / s["name"])
            assert len(samples) == s["num_samples"]
            for smp in samples:
                i = json.loads(smp["meta.json"])["frame"]
                seen.append(i)
                assert smp["__key__"] == f"{i:06d}"
                for k in ("landmarks", "aus", "extrinsics", "intrinsics", "audio"):
                    np.testing.assert_array_equal(sh.decode_npy(smp[f"{k}.npy"]), feats[k][i])
                img = sh.decode_image(smp["image.jpg"])
                bits = sh.decode_image(smp["masks.png"], gray=True)
                assert img.shape == (128, 128, 3) and bits.shape == (128, 128)
                masks = unpack_masks(bits)  # [3, H, W]: face, lips, inner mouth
                assert set(np.unique(masks)) <= {0.0, 1.0} and masks[0].mean() > 0.05  # a face
                assert masks[1].sum() > 0  # lips drawn
    assert seen == list(range(m["num_frames"]))  # every frame once, in order


def _tars(d):
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.tar"))}


def test_resume_after_kill_gives_identical_shards(tmp_path, synthetic_clip):
    cmd = [sys.executable, "-m", "hm_talker.cli", "-q", "preprocess", str(synthetic_clip.path),
           "--size", "128", "--shard-frames", "6"]
    whole = tmp_path / "whole"
    subprocess.run(cmd + ["--out", str(whole)], check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list(killed.glob("train-*.tar"))) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists(), "the run ended before it could be killed"
    done = _tars(killed)
    assert 3 <= len(done) < len(_tars(whole))
    for name, data in done.items():  # whatever looks finished is finished
        assert data == (whole / name).read_bytes()
        with tarfile.open(killed / name) as t:
            assert len(t.getmembers()) > 0

    before = {n: os.stat(killed / n).st_mtime_ns for n in done}
    subprocess.run(cmd + ["--out", str(killed)], check=True, capture_output=True)
    assert _tars(killed) == _tars(whole)
    assert all(os.stat(killed / n).st_mtime_ns == t for n, t in before.items())  # kept, not rewritten
    import json
    mk, mw = (json.loads((d / "manifest.json").read_text()) for d in (killed, whole))
    assert mk.pop("identity") == "killed" and mw.pop("identity") == "whole" and mk == mw
    # and a third run finds nothing to do
    stamp = {p.name: p.stat().st_mtime_ns for p in killed.iterdir()}
    subprocess.run(cmd + ["--out", str(killed)], check=True, capture_output=True)
    assert {p.name: p.stat().st_mtime_ns for p in killed.iterdir()} == stamp


def test_npy_decoding_refuses_pickles_and_truncation():
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        sh.decode_npy(buf.getvalue())
    good = sh.encode_npy(np.eye(4, dtype=np.float32))
    assert np.array_equal(sh.decode_npy(good), np.eye(4)) and np.array_equal(sh.decode_npy(good), np.eye(4))
    with pytest.raises(ValueError, match="truncated"):
        sh.decode_npy(good[:-4])
