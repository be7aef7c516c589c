"""One shard sample (the members `hm-talker preprocess` writes per frame) -> tensors."""
from __future__ import annotations

import json

import numpy as np
import torch

from hm_talker.preprocess.masks import unpack_masks
from hm_talker.preprocess.shards import decode_image, decode_npy

ARRAY_MEMBERS = ("landmarks", "aus", "extrinsics", "intrinsics", "audio")


def decode_sample(s: dict) -> dict:
    """A shard sample's raw members -> tensors; a non-finite array is a ValueError (a corrupt sample)."""
    img_key = "image.jpg" if "image.jpg" in s else "image.png"
    img = decode_image(s[img_key])
    masks = unpack_masks(decode_image(s["masks.png"], gray=True))
    meta = json.loads(s["meta.json"])
    arrays = {k: decode_npy(s[f"{k}.npy"]) for k in ARRAY_MEMBERS}
    bad = [k for k, a in arrays.items() if not np.isfinite(a).all()]
    if bad:
        raise ValueError(f"non-finite values in {', '.join(bad)}")
    # numpy, not torch ops: no intra-op thread pool in the loader (it fights the trainer's threads)
    chw = np.empty((3,) + img.shape[:2], dtype=np.float32)
    np.multiply(img.transpose(2, 0, 1), np.float32(1 / 255), out=chw)  # one pass: layout, type and scale
    return {
        "image": torch.from_numpy(chw),  # [3, H, W] in [0, 1]
        "masks": torch.from_numpy(masks),  # [3, H, W] 0/1: face, lips, inner mouth
        "landmarks": torch.from_numpy(arrays["landmarks"]),  # [478, 3]
        "aus": torch.from_numpy(arrays["aus"]),  # [17]
        "extrinsics": torch.from_numpy(arrays["extrinsics"]),  # [4, 4]
        "intrinsics": torch.from_numpy(arrays["intrinsics"]),  # [3, 3]
        "audio": torch.from_numpy(arrays["audio"]),  # [k, D]
        "frame": int(meta["frame"]),
        "clip": int(meta["clip"]),
    }
