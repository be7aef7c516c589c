"""`hm-talker infer --ckpt CKPT --audio SPEECH --out VIDEO.mp4`: drive a trained head with any speech.

One frame per 40 ms of audio, the last partial one included (3.3 s -> 83 frames). Head poses, eye and
brow AUs and the background come from the training clip, replayed forwards then backwards
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


def load_module(ckpt_path, data_root=None):
    """Checkpoint -> (TalkingHeadModule in eval mode, identity dir, manifest). Safe loading only."""
    from omegaconf import OmegaConf

    from datamodules.talking_head import load_features, load_manifest
    from hm_talker.safe_read import load_checkpoint
    from hm_talker.training.config import FitConfig
    from hm_talker.training.module import TalkingHeadModule

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
    module = TalkingHeadModule(OmegaConf.to_object(cfg), mean_shape, config_dict=ckpt["config"])
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise InputError(ckpt_path, f"weights do not match the checkpoint's config ({str(exc).splitlines()[0]})") from None
    return module.eval(), root, manifest


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


def infer(ckpt, audio_path, out_path, data_root=None, audio_model=None, batch_size: int = 4) -> dict:
    """Load the checkpoint and drive it with `audio_path` (see `drive`)."""
    from hm_talker.safe_output import check_output_file

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(None, f"--batch-size {batch_size} must be a positive integer")
    check_output_file(out_path)  # at once, not after the render
    module, root, manifest = load_module(ckpt, data_root)
    return drive(module, root, manifest, audio_path, out_path, audio_model, batch_size, ckpt)


def drive(module, root: Path, manifest: dict, audio_path, out_path, audio_model=None, batch_size: int = 4,
          ckpt=None) -> dict:
    """Render `out_path` from an already loaded model; returns frames, seconds and render frames/s."""
    import torch
    from tqdm import tqdm

    from datamodules.stages import Windows
    from hm_talker.preprocess.media import load_audio

    out_path = Path(out_path)
    sr, fps = manifest["sample_rate"], manifest["fps"]
    audio = load_audio(audio_path, sr)
    per_frame = sr // fps
    n = max(1, math.ceil(len(audio) / per_frame))  # a partial last frame still gets its frame
    expected = (module.cfg.model.audio.rows_per_frame, module.cfg.model.audio.feature_dim)
    feats = driving_features(audio, n, manifest, audio_model, expected, ckpt)
    windows = Windows(feats, np.zeros((n, 17), np.float32), np.zeros(n, np.int64), module.cfg.data.window)
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
            t = time.perf_counter()
            rgb = module.render(batch, module.deform(batch))["rgb"]
            render_s += time.perf_counter() - t
            video.write((rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy())
    report = {"video": str(out_path), "frames": n, "fps": fps, "seconds": n / fps,
              "render_fps": n / max(render_s, 1e-9)}
    return report


def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="drive a trained head with speech -> mp4 with sound")
    p.add_argument("--ckpt", required=True, help="checkpoint (RUN_DIR/checkpoints/last.ckpt)")
    p.add_argument("--audio", required=True, help="speech in any format librosa reads, any sample rate")
    p.add_argument("--out", required=True, help="output mp4")
    p.add_argument("--data", default=None, help="the preprocessed identity (default: the one it trained on)")
    p.add_argument("--audio-model", default=None, help="local HuBERT/wav2vec2 weights, if it trained on them")
    p.add_argument("--batch-size", type=int, default=4, help="frames rendered at once")
    p.set_defaults(func=_run)


def _run(args) -> int:
    r = infer(args.ckpt, args.audio, args.out, args.data, args.audio_model, args.batch_size)
    print(f"{r['video']}: {r['frames']} frames at {r['fps']} fps ({r['seconds']:.2f} s), "
          f"rendered at {r['render_fps']:.1f} frames/s")
    print(json.dumps(r))
    return 0
