"""The DataModule over real shards: shapes, windows, DDP splitting, corrupt samples."""
from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import TalkingHeadDataModule
from datamodules.stages import assign_shards, reader_quota
from hm_talker.data.windows import Windows
from hm_talker.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def test_batches_have_the_documented_shapes(synthetic_identity):
    dm = TalkingHeadDataModule(str(synthetic_identity), batch_size=4, num_workers=0)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    b = batches[0]
    assert b["image"].shape == (4, 3, 128, 128) and b["image"].dtype == torch.float32
    assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0
    assert b["masks"].shape == (4, 3, 128, 128)
    assert b["landmarks"].shape == (4, 478, 3) and b["aus"].shape == (4, 17)
    assert b["extrinsics"].shape == (4, 4, 4) and b["intrinsics"].shape == (4, 3, 3)
    assert b["audio"].shape == (4, 4, 80)
    assert b["audio_window"].shape == (4, 8, 4, 80) and b["aus_window"].shape == (4, 8, 17)
    # the window is centred on the frame: its row W/2 is the frame's own feature
    assert torch.equal(b["audio_window"][:, 4], b["audio"]) and torch.equal(b["aus_window"][:, 4], b["aus"])
    frames = torch.cat([x["frame"] for x in batches]).tolist()
    n_train = dm.manifest["splits"]["train"]
    assert len(frames) == len(set(frames)) == n_train // 4 * 4
    assert frames != sorted(frames)  # shuffled


def test_validation_is_the_held_out_tail_in_frame_order(synthetic_identity):
    dm = TalkingHeadDataModule(str(synthetic_identity), num_workers=2, val_batch_size=5)
    dm.setup("fit")
    frames = torch.cat([b["frame"] for b in dm.val_dataloader()]).tolist()
    m = dm.manifest
    assert frames == list(range(m["splits"]["train"], m["num_frames"]))


def test_windows_stop_at_clip_edges():
    audio = np.arange(10, dtype=np.float32)[:, None, None]
    w = Windows(audio, np.zeros((10, 17), np.float32), np.array([0] * 6 + [1] * 4), window=8)
    assert w.indices(0).tolist() == [0, 0, 0, 0, 0, 1, 2, 3]
    assert w.indices(5).tolist() == [1, 2, 3, 4, 5, 5, 5, 5]  # never into clip 1
    assert w.indices(7).tolist() == [6, 6, 6, 6, 7, 8, 9, 9]


def test_shard_assignment_is_balanced_and_epoch_independent_in_size():
    sizes = [16] * 8 + [8]
    a = assign_shards(sizes, 4, list(range(9)))
    b = assign_shards(sizes, 4, [8, 3, 1, 0, 7, 2, 6, 5, 4])
    assert sorted(sum(sizes[s] for s in p) for p in a) == sorted(sum(sizes[s] for s in p) for p in b)
    assert sorted(x for p in a for x in p) == list(range(9))
    assert reader_quota(sizes, 4) == 32


def test_two_process_ddp_reads_each_frame_once_per_epoch(synthetic_identity, tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "tests" / "ddp_frames.py"), str(synthetic_identity),
                        str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    n_train = json.loads((synthetic_identity / "manifest.json").read_text())["splits"]["train"]
    for epoch in ("0", "1"):
        per_rank = [[f for batch in rk[epoch] for f in batch] for rk in ranks]
        assert len(ranks[0][epoch]) == len(ranks[1][epoch]) > 0  # same number of batches: no DDP hang
        union = per_rank[0] + per_rank[1]
        assert len(union) == len(set(union))  # no frame read twice in an epoch across ranks
        assert len(union) >= n_train - 4 * 16  # at most one shard per reader sits out
    assert ranks[0]["0"] != ranks[0]["1"]  # reshuffled between epochs


def _corrupt_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    shard = sorted(dst.glob("train-*.tar"))[0]
    with tarfile.open(shard) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as t:
        for m, data in members:
            if m.name.endswith("image.jpg") and m.name.startswith("000002"):
                data = b"\x00" * len(data)  # an undecodable image in an intact tar
            t.addfile(m, io.BytesIO(data))
    return dst


def test_corrupt_sample_is_skipped_counted_and_batch_count_kept(synthetic_identity, tmp_path, caplog):
    bad = _corrupt_copy(synthetic_identity, tmp_path / "bad")
    good = TalkingHeadDataModule(str(synthetic_identity), batch_size=4, num_workers=0)
    dm = TalkingHeadDataModule(str(bad), batch_size=4, num_workers=0)
    good.setup(), dm.setup()
    with caplog.at_level(logging.WARNING, logger="hm_talker"):
        batches = list(dm.train_dataloader())
    assert len(batches) == len(list(good.train_dataloader()))
    frames = torch.cat([b["frame"] for b in batches]).tolist()
    assert 2 not in frames
    assert any("corrupt sample (1 so far" in r.getMessage() for r in caplog.records)


def test_truncated_shard_does_not_end_the_epoch(synthetic_identity, tmp_path, caplog):
    bad = tmp_path / "trunc"
    shutil.copytree(synthetic_identity, bad)
    shard = sorted(bad.glob("train-*.tar"))[1]
    shard.write_bytes(shard.read_bytes()[:30_000])
    dm = TalkingHeadDataModule(str(bad), batch_size=4, num_workers=0)
    dm.setup()
    with caplog.at_level(logging.WARNING, logger="hm_talker"):
        batches = list(dm.train_dataloader())
    assert len(batches) == dm.train_batches_per_reader()
    assert any("corrupt" in r.getMessage() for r in caplog.records)


def test_missing_identity_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no manifest.json"):
        TalkingHeadDataModule(str(tmp_path)).setup()


def test_order_is_reproducible_for_a_seed_and_changes_with_it(synthetic_identity):
    def frames(seed, epoch=0):
        dm = TalkingHeadDataModule(str(synthetic_identity), batch_size=4, num_workers=0, seed=seed)
        dm.setup()
        dm._epoch.value = epoch
        return torch.cat([b["frame"] for b in dm.train_pipeline()]).tolist()

    assert frames(1) == frames(1)
    assert frames(1) != frames(2) and frames(1) != frames(1, epoch=1)
