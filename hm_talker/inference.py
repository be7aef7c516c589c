"""`hm-talker infer --ckpt CKPT --audio SPEECH --out VIDEO.mp4`: drive a trained head with any speech.

One frame per 40 ms of audio, the last partial one included (3.3 s -> 83 frames). The lower face
follows the audio only (CMMM's predicted AUs and the implicit audio feature; the driving speech's
features are normalised by its own statistics). Head poses, eye and brow AUs (hmmm.upper_au_source
= frames) and the background come from the training clip, replayed forwards then backwards
(ping-pong) so the loop has no jump at the seam. The sound is muxed in; the file appears only
when complete.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from hm_talker.errors import InputError
from hm_talker.validate import refuse_interpolation
from hm_talker.video_writer import VideoWriter


def resolve_device(device: str = "auto"):
    """auto -> CUDA when present, else the CPU; cuda without a GPU is an InputError."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise InputError(None, f"--device must be auto, cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda: no CUDA device is available")
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")


def match_training_render(module, trained: dict, device) -> dict:
    """Render as in training: its backend where this device has it, else the PyTorch rasteriser with
    the trained backend's alpha clamp (gsplat's 0.999, not 3DGS's 0.99). Returns what is used."""
    from hm_talker.render.rasterizer import GSPLAT_ALPHA_MAX, gsplat_available

    rc = module.head.render_cfg
    trained_backend = trained.get("backend", "torch")
    if trained_backend == "gsplat" and device.type == "cuda" and gsplat_available():
        rc.backend = "gsplat"
    else:
        rc.backend = "torch"
        rc.alpha_max = float(trained.get("alpha_max", GSPLAT_ALPHA_MAX if trained_backend == "gsplat" else rc.alpha_max))
    alpha = GSPLAT_ALPHA_MAX if rc.backend == "gsplat" else rc.alpha_max
    return {"device": str(device), "backend": rc.backend, "alpha_max": alpha, "trained_backend": trained_backend}


def load_module(ckpt_path, data_root=None, device: str = "auto"):
    """Checkpoint -> (HMMMModule in eval mode on `device`, identity dir, manifest). Safe loading only.

    `module.render_info` says which device, backend and alpha clamp render (see match_training_render)."""
    from omegaconf import OmegaConf

    from datamodules.talking_head import load_features, load_manifest
    from hm_talker.safe_read import load_checkpoint
    from hm_talker.training.config import FitConfig
    from hm_talker.training.hmmm_module import HMMMModule

    ckpt_path = Path(ckpt_path)
    ckpt = load_checkpoint(ckpt_path)  # weights_only: no code runs; corrupt / unsafe -> InputError
    if "state_dict" not in ckpt or not isinstance(ckpt.get("config"), dict):
        raise InputError(ckpt_path, "not an hm-talker checkpoint (no state_dict / config)")
    refuse_interpolation(ckpt["config"], ckpt_path)  # a stored config is never resolved
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(FitConfig), ckpt["config"])
    except Exception as exc:  # keys or types that FitConfig does not have
        raise InputError(ckpt_path, f"checkpoint config does not fit this version ({type(exc).__name__})") from None
    root = Path(data_root or cfg.data.root)
    manifest = load_manifest(root)
    expected = [cfg.model.audio.rows_per_frame, cfg.model.audio.feature_dim]
    have = manifest["features"]["audio"]["shape"]
    if list(have) != expected:
        raise InputError(ckpt_path, f"checkpoint was trained on audio features of shape {expected}, the "
                                    f"identity {root} has {manifest['features']['audio']['kind']} {list(have)}")
    mean_shape = load_features(root)["mean_shape"]
    module = HMMMModule(OmegaConf.to_object(cfg), mean_shape, config_dict=ckpt["config"])
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise InputError(ckpt_path, f"weights do not match the checkpoint's config ({str(exc).splitlines()[0]})") from None
    dev = resolve_device(device)
    module = module.to(dev).eval()
    module.render_info = match_training_render(module, ckpt.get("render", {}), dev)
    return module, root, manifest


class IdentityFrames:
    """Random access to the training clip's frames through its shards (one shard decoded at a time)."""

    def __init__(self, root: Path, manifest: dict):
        self.root = root
        self.spans = [(s["start"], s["start"] + s["num_samples"], s["name"])
                      for split in ("train", "val") for s in manifest["shards"][split]]
        self.num_frames = manifest["num_frames"]
        self._name, self._samples = None, {}

    def __getitem__(self, i: int) -> dict:
        from datamodules.stages import decode_sample
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


def ping_pong(k: int, n: int) -> int:
    """Frame of the training clip shown at output frame k: 0..n-1, n-2..1, 0..n-1, ..."""
    if n == 1:
        return 0
    p = k % (2 * (n - 1))
    return p if p < n else 2 * (n - 1) - p


def driving_features(audio: np.ndarray, num_frames: int, manifest: dict, audio_model: str | None,
                     expected: tuple[int, int], ckpt_path) -> np.ndarray:
    """Features of the driving speech, of the kind and shape the checkpoint was trained on."""
    from hm_talker.preprocess.audio_features import log_mel, ssl_features

    pc = manifest["config"]
    kind = manifest["features"]["audio"]["kind"]
    if kind == "mel":
        feats = log_mel(audio, num_frames, pc["sample_rate"], pc["fps"], pc["n_mels"], pc["mel_hop"],
                        pc["mel_win"], pc["mel_fmin"], pc["mel_fmax"])
    else:
        feats = ssl_features(audio, num_frames, pc["sample_rate"], pc["fps"],
                             audio_model or pc.get("audio_model", ""), kind)
    if tuple(feats.shape[1:]) != tuple(expected):
        raise InputError(ckpt_path, f"checkpoint was trained on audio features of shape {list(expected)}, "
                                    f"the driving audio gives {list(feats.shape[1:])} ({kind})")
    return feats


def infer(ckpt, audio_path, out_path, data_root=None, audio_model=None, batch_size: int = 4,
          device: str = "auto") -> dict:
    """Load the checkpoint and drive it with `audio_path` (see `drive`)."""
    from hm_talker.safe_output import check_output_file

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(None, f"--batch-size {batch_size} must be a positive integer")
    check_output_file(out_path)  # at once, not after the render
    module, root, manifest = load_module(ckpt, data_root, device)
    return drive(module, root, manifest, audio_path, out_path, audio_model, batch_size, ckpt)


def drive(module, root: Path, manifest: dict, audio_path, out_path, audio_model=None, batch_size: int = 4,
          ckpt=None) -> dict:
    """Render `out_path` from an already loaded model; returns frames, seconds and render frames/s."""
    import torch
    from tqdm import tqdm

    from datamodules.stages import Windows
    from hm_talker.preprocess.media import load_audio

    out_path = Path(out_path)
    start = time.perf_counter()  # end to end: features, decoding, render, encoding
    sr, fps = manifest["sample_rate"], manifest["fps"]
    audio = load_audio(audio_path, sr)
    per_frame = sr // fps
    n = max(1, math.ceil(len(audio) / per_frame))  # a partial last frame still gets its frame
    expected = (module.cfg.model.audio.rows_per_frame, module.cfg.model.audio.feature_dim)
    feats = driving_features(audio, n, manifest, audio_model, expected, ckpt)
    if module.cfg.cmmm.speaker_norm:  # the driving speaker's own band statistics (as in training)
        from datamodules.feature_windows import band_stats

        module.cmmm.set_audio_stats(*band_stats(feats))
    speech = None
    if manifest["features"]["audio"]["kind"] == "mel":  # CMMM's speaker-free input (energy, flux)
        from hm_talker.preprocess.speech_features import mouth_audio_features

        speech = mouth_audio_features(feats, "energy")
    windows = Windows(feats, np.zeros((n, 17), np.float32), np.zeros(n, np.int64), module.cfg.data.window,
                      speech, module.cfg.cmmm.net.speech_window)
    calibrate_to_speech(module, feats, windows, speech is not None)
    frames = IdentityFrames(root, manifest)
    size = manifest["size"]

    render_s = 0.0
    sound = np.pad(audio, (0, n * per_frame - len(audio)))  # sound exactly as long as the video
    with VideoWriter(out_path, size, size, fps, sound, sr) as video, torch.no_grad():
        for k0 in tqdm(range(0, n, batch_size), desc="render", unit="batch", leave=False):
            ks = list(range(k0, min(n, k0 + batch_size)))
            samples = [frames[ping_pong(k, frames.num_frames)] for k in ks]
            batch = {key: torch.stack([s[key] for s in samples])
                     for key in ("image", "masks", "extrinsics", "intrinsics", "aus")}
            batch["audio_window"] = torch.from_numpy(np.stack([feats[windows.indices(k)] for k in ks]))
            if speech is not None:
                batch["speech_window"] = torch.from_numpy(np.stack([speech[windows.indices(k, windows.speech_window)]
                                                                    for k in ks]))
            batch = {k: v.to(module.device) for k, v in batch.items()}
            t = time.perf_counter()
            rgb = module.render(batch, module.deform(batch))["rgb"]
            out = (rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()  # waits for the GPU
            render_s += time.perf_counter() - t
            video.write(out)
    total_s = time.perf_counter() - start
    report = {"video": str(out_path), "frames": n, "fps": fps, "seconds": n / fps,
              "render_fps": n / max(render_s, 1e-9), "end_to_end_fps": n / max(total_s, 1e-9),
              **getattr(module, "render_info", {})}
    return report


def calibrate_to_speech(module, feats: np.ndarray, windows, has_speech: bool, batch: int = 256) -> None:
    """CMMM's prediction statistics of the driving speech (a first pass over its windows), so the
    calibrated AUs of another speaker span the identity's measured range."""
    import torch

    if not module.cmmm.cfg.calibrate:
        return
    n, pred = len(feats), []
    with torch.no_grad():
        for k0 in range(0, n, batch):
            ks = range(k0, min(n, k0 + batch))
            a = torch.from_numpy(np.stack([feats[windows.indices(k)] for k in ks])).to(module.device)
            s = (torch.from_numpy(np.stack([windows.speech[windows.indices(k, windows.speech_window)] for k in ks]))
                 .to(module.device) if has_speech else None)
            pred.append(module.cmmm(a, s)["raw_aus"])
    if n > 1:
        module.cmmm.set_calibration(pred_aus=torch.cat(pred))


def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="drive a trained head with speech -> mp4 with sound")
    p.add_argument("--ckpt", required=True, help="checkpoint (RUN_DIR/checkpoints/last.ckpt)")
    p.add_argument("--audio", required=True, help="speech in any format librosa reads, any sample rate")
    p.add_argument("--out", required=True, help="output mp4")
    p.add_argument("--data", default=None, help="the preprocessed identity (default: the one it trained on)")
    p.add_argument("--audio-model", default=None, help="local HuBERT/wav2vec2 weights, if it trained on them")
    p.add_argument("--batch-size", type=int, default=4, help="frames rendered at once")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA when present (renders with the backend the model was trained with)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    r = infer(args.ckpt, args.audio, args.out, args.data, args.audio_model, args.batch_size, args.device)
    print(f"{r['video']}: {r['frames']} frames at {r['fps']} fps ({r['seconds']:.2f} s), rendered at "
          f"{r['render_fps']:.1f} frames/s, {r['end_to_end_fps']:.1f} frames/s end to end ({r['device']}, {r['backend']})")
    print(json.dumps(r))
    return 0
