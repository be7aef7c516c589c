"""A preprocessed identity on disk: its manifest, its per-frame feature arrays and its frames.

`hm-talker preprocess` writes, per identity: `manifest.json` (written last: sizes, fps, sample rate,
feature kinds, train / val split, the shard list), `features.npz` (the per-frame arrays of the whole
identity) and WebDataset shards with one sample per frame. Every reader checks what it reads and turns
a defect into one InputError naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hm_talker.errors import InputError

FEATURE_KEYS = ("audio", "aus", "landmarks", "extrinsics", "intrinsics", "clip_ids", "mean_shape")


def load_manifest(root) -> dict:
    """The identity's manifest.json, checked: ours, well-formed, every listed shard present."""
    from hm_talker.safe_read import read_json

    root = Path(root)
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise InputError(root, "not a preprocessed identity (no manifest.json): run hm-talker preprocess")
    m = read_json(mpath, "manifest.json")
    if not isinstance(m, dict) or not str(m.get("format", "")).startswith("hm-talker-shards/"):
        got = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise InputError(mpath, f"not an hm-talker manifest (format {got!r})")
    try:
        check_manifest(m)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(mpath, f"malformed manifest ({type(exc).__name__}: {exc})") from None
    missing = [s["name"] for sp in m["shards"].values() for s in sp if not (root / s["name"]).is_file()]
    if missing:
        raise InputError(root, f"{len(missing)} shard(s) listed in manifest.json are missing, e.g. {missing[0]}")
    return m


def check_manifest(m: dict) -> None:
    """The fields the loaders read, with their types; shard names are plain file names."""
    for key in ("num_frames", "fps", "sample_rate", "size"):
        if not isinstance(m[key], int) or isinstance(m[key], bool) or m[key] <= 0:
            raise ValueError(f"{key} must be a positive integer")
    for split in ("train", "val"):
        for s in m["shards"][split]:
            name = s["name"]
            if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
                raise ValueError(f"shard name {name!r} is not a plain file name")
            if not isinstance(s["num_samples"], int) or not isinstance(s["start"], int) or s["num_samples"] < 0:
                raise ValueError(f"shard {name}: start / num_samples must be integers")
    shape = m["features"]["audio"]["shape"]
    if len(shape) != 2 or not all(isinstance(v, int) for v in shape):
        raise ValueError("features.audio.shape must be two integers")
    if not isinstance(m["config"], dict):
        raise ValueError("config must be an object")


def load_features(root) -> dict[str, np.ndarray]:
    """features.npz of an identity (no pickles), every array finite; defects -> InputError naming it."""
    path = Path(root) / "features.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise InputError(path, "missing (re-run hm-talker preprocess)") from None
    except Exception as exc:  # truncated zip, object arrays, not an npz
        raise InputError(path, f"unreadable features ({type(exc).__name__})") from None
    missing = [k for k in FEATURE_KEYS if k not in arrays]
    if missing:
        raise InputError(path, f"missing arrays: {', '.join(missing)}")
    bad = [k for k, a in arrays.items() if a.dtype.kind in "fc" and not np.isfinite(a).all()]
    if bad:
        raise InputError(path, f"non-finite values (NaN or inf) in {', '.join(bad)}")
    return arrays


def speech_rows(manifest: dict) -> int:
    """Rows per frame of the identity's speaker-free speech features (10 ms mel rows: 4 at the default rate);
    a mel identity preprocessed before they were stored has them from its mel rows."""
    speech = manifest["features"].get("speech")
    return int(speech["shape"][0]) if speech else int(manifest["features"]["audio"]["shape"][0])


def held_out_frames(manifest: dict) -> range:
    """Indices of the held-out tail (the val split): the frames the self-driven protocol scores."""
    start = int(manifest["splits"]["train"])
    return range(start, start + int(manifest["splits"]["val"]))


class IdentityFrames:
    """Random access to the identity's frames through its shards (one shard decoded at a time)."""

    def __init__(self, root: Path, manifest: dict):
        self.root = Path(root)
        self.spans = [(s["start"], s["start"] + s["num_samples"], s["name"])
                      for split in ("train", "val") for s in manifest["shards"][split]]
        self.num_frames = manifest["num_frames"]
        self._name, self._samples = None, {}

    def __getitem__(self, i: int) -> dict:
        from hm_talker.data.samples import decode_sample
        from hm_talker.preprocess.shards import read_shard

        name = next(n for lo, hi, n in self.spans if lo <= i < hi)
        if name != self._name:
            try:
                self._samples = {int(s["__key__"]): s for s in read_shard(self.root / name)}
            except Exception as exc:  # truncated or foreign tar: one line naming the shard
                raise InputError(self.root / name, f"corrupt shard ({type(exc).__name__}: {exc})") from None
            self._name = name
        if i not in self._samples:
            raise InputError(self.root / name, f"frame {i} is missing from the shard (re-run hm-talker preprocess)")
        try:
            return decode_sample(self._samples[i])
        except Exception as exc:  # fit skips such samples; a video frame cannot be skipped
            raise InputError(self.root / name, f"corrupt sample {i:06d} ({type(exc).__name__}: {exc}); "
                                               "re-run hm-talker preprocess") from None


def check_training_frames(root: Path, manifest: dict, per_shard: int = 2) -> None:
    """Decode the first `per_shard` samples of every train shard: when none of them decodes, the identity
    cannot train (an InputError now, before CMMM's stage 1 spends minutes). A few corrupt samples are
    the loader's to skip and count; this only refuses shards that are corrupt throughout."""
    import itertools
    import tarfile

    from hm_talker.data.samples import decode_sample

    root = Path(root)
    last = ""
    for s in manifest["shards"]["train"]:
        try:
            with tarfile.open(root / s["name"], "r") as tar:
                samples: dict[str, dict] = {}
                for m in itertools.islice((m for m in tar if m.isfile()), 64):
                    key, ext = m.name.split(".", 1)
                    samples.setdefault(key, {"__key__": key})[ext] = tar.extractfile(m).read()
        except (tarfile.TarError, OSError, ValueError) as exc:
            last = f"{s['name']}: {type(exc).__name__}"
            continue
        for sample in list(samples.values())[:per_shard]:
            try:
                decode_sample(sample)
                return
            except Exception as exc:  # noqa: BLE001 (any undecodable member: this sample is corrupt)
                last = f"{s['name']}:{sample['__key__']}: {exc}"
    raise InputError(root, f"no training frame decodes: the first {per_shard} samples of every train shard are "
                           f"corrupt (last corrupt sample {last}); re-run hm-talker preprocess")
