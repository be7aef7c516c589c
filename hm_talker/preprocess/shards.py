"""WebDataset tar shards: one sample per frame, no pickles, written atomically and deterministically.

A shard is written to `NAME.tar.partial` and renamed to `NAME.tar` only when complete, so a killed
run never leaves a truncated shard that looks finished. Tar headers carry fixed owner and mtime, so
the same input gives byte-identical shards (what makes resume verifiable).
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np


def encode_npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


_NPY_HEADERS: dict[bytes, tuple] = {}  # header bytes -> (dtype, shape, data offset)


def decode_npy(b: bytes) -> np.ndarray:
    """.npy bytes -> array, never unpickling. Every sample of a shard repeats the same few headers,
    so a parsed header is cached (np.load re-parses it with ast for each of the ~6 arrays per frame)."""
    if b[:8] == b"\x93NUMPY\x01\x00":
        end = 10 + int.from_bytes(b[8:10], "little")
        head = b[:end]
        meta = _NPY_HEADERS.get(head)
        if meta is None:
            arr = np.load(io.BytesIO(b), allow_pickle=False)
            if arr.dtype.hasobject or arr.dtype.fields or not arr.flags.c_contiguous or len(_NPY_HEADERS) > 256:
                return arr
            meta = _NPY_HEADERS[head] = (arr.dtype, arr.shape, end)
        dtype, shape, off = meta
        if len(b) != off + dtype.itemsize * int(np.prod(shape)):
            raise ValueError("truncated .npy member")
        return np.frombuffer(b, dtype=dtype, offset=off).reshape(shape).copy()
    return np.load(io.BytesIO(b), allow_pickle=False)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_image(img: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    """RGB [H, W, 3] (png also: one channel [H, W]) uint8 -> jpg / png bytes.

    PNG goes through Pillow: OpenCV's bundled libpng fails on some streams ("bad parameters to
    zlib") once the CUDA build of torch has loaded its own zlib into the process.
    """
    if fmt == "png":
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("could not encode a jpg image")
    return buf.tobytes()


def decode_image(b: bytes, gray: bool = False) -> np.ndarray:
    """jpg / png bytes -> RGB uint8 [H, W, 3] ([H, W] with `gray`); ValueError when not an image."""
    if b[:8] == PNG_SIGNATURE:
        from PIL import Image

        try:
            img = np.asarray(Image.open(io.BytesIO(b)).convert("L" if gray else "RGB"))
            return img if gray else img.copy()  # gray masks are only read; RGB must be writable
        except Exception as exc:  # Pillow raises several types for broken streams
            raise ValueError(f"undecodable image ({exc})") from None
    import cv2

    img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("undecodable image")
    return img if gray else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_shard(path: Path, samples: list[dict[str, bytes]]) -> int:
    """Write samples (each {'__key__': str, ext: bytes}) to `path` atomically; returns its size."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as fh:
        with tarfile.open(fileobj=fh, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for s in samples:
                key = s["__key__"]
                for ext in sorted(k for k in s if k != "__key__"):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mtime, info.mode = len(s[ext]), 0, 0o644
                    info.uname = info.gname = "hm-talker"
                    tar.addfile(info, io.BytesIO(s[ext]))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path.stat().st_size


def read_shard(path: Path) -> list[dict[str, bytes]]:
    """All samples of a shard as raw bytes, grouped by key in file order."""
    out: list[dict[str, bytes]] = []
    with tarfile.open(path, "r") as tar:
        for m in tar:
            if not m.isfile():
                continue
            key, ext = m.name.split(".", 1)
            if not out or out[-1]["__key__"] != key:
                out.append({"__key__": key})
            out[-1][ext] = tar.extractfile(m).read()
    return out


def write_json_atomic(path: Path, obj) -> None:
    tmp = Path(str(path) + ".partial")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)
