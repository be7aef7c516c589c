"""`hm-talker preprocess`: videos of one identity -> WebDataset shards + manifest.json + features.npz.

Pass 1 (analysis.py) decodes small frames for landmarks and checks every input; nothing is written
before it succeeds, so bad input leaves no directory behind. Pass 2 decodes again at the output
resolution and writes shards one at a time; finished shards are skipped on a re-run (resume), and
manifest.json is written last, so its presence means the directory is complete.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hm_talker.constants import AU_NAMES
from hm_talker.errors import InputError
from hm_talker.output_lock import OutputLock
from hm_talker.preprocess import shards as sh
from hm_talker.preprocess.analysis import ClipAnalysis, analyse_clip
from hm_talker.preprocess.av_offset import align_sound
from hm_talker.preprocess.audio_features import frame_start, log_mel, ssl_features
from hm_talker.preprocess.aus import AUCalibration, read_openface_csv
from hm_talker.preprocess.config import PreprocessConfig
from hm_talker.preprocess.crop_checks import report_crop_on_bars, report_crop_outside
from hm_talker.preprocess.masks import MASK_NAMES, draw_masks, pack_masks
from hm_talker.preprocess.media import iter_frames, prefetch, scaled_size
from hm_talker.preprocess.pose import head_poses, mean_shape
from hm_talker.preprocess.speech_features import SPEECH_KIND, formants_of, speech_features_of
from hm_talker.preprocess.track import crop_boxes, crop_frame, fit_into_region, to_crop_coords
from hm_talker.safe_output import check_writable_dir, remove_new_entries, write_marker
from hm_talker.safe_read import read_json
from hm_talker.validate import check_preprocess_config

log = logging.getLogger("hm_talker")
FORMAT = "hm-talker-shards/1"
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"}


def list_videos(inputs) -> list[Path]:
    """Files and folders (their videos, sorted) -> the clips of one identity, in order."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in VIDEO_EXTS)
            if not found:
                raise InputError(item, "folder holds no video files")
            out += found
        else:
            out.append(item)
    if not out:
        raise InputError(None, "no input video given")
    return out


# fields added after identities were made, which leave the output unchanged at their defaults
# (sound warnings; k rows per frame at 25 fps): left out of the fingerprint while at the default,
# so an identity made before them is still up to date
LATER_FIELDS = ("clip_level", "max_clipped_fraction", "max_constant_fraction", "audio_rows_fps", "crop_outside_warn",
                "crop_inside", "letterbox_level")


def fingerprint(videos: list[Path], audio: Path | None, cfg: PreprocessConfig) -> str:
    default = PreprocessConfig()
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k not in LATER_FIELDS or v != getattr(default, k)}
    h = hashlib.sha256(repr(sorted(settings.items())).encode())
    for p in videos + ([audio] if audio else []):
        if p.is_file():
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def versions() -> dict:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in ["hm-talker", "numpy", "torch", "mediapipe", "decord", "librosa", "opencv-contrib-python",
                "webdataset", "transformers"]:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out



def compute_features(clips: list[ClipAnalysis], cfg: PreprocessConfig) -> dict[str, np.ndarray]:
    """Per-frame arrays of the whole identity (small: no images)."""
    clip_ids = np.concatenate([np.full(len(c.src_indices), i) for i, c in enumerate(clips)])
    lms = np.concatenate([c.landmarks for c in clips])
    boxes = crop_boxes(lms, cfg.crop_scale, cfg.crop_center_y, cfg.crop_smooth_sigma, clip_ids)
    if cfg.crop_inside:
        for cid, c in enumerate(clips):
            boxes[clip_ids == cid] = fit_into_region(boxes[clip_ids == cid], c.picture)
    crop_outside = report_crop_outside(clips, boxes, clip_ids, cfg.crop_outside_warn, cfg.crop_scale)
    crop_on_bars = report_crop_on_bars(clips, boxes, clip_ids, cfg.crop_outside_warn)
    lms_crop = np.stack([to_crop_coords(p, b, cfg.size) for p, b in zip(lms, boxes)])
    shape = mean_shape(lms_crop)
    ext, K, canon = head_poses(lms_crop, shape, cfg.size, cfg.focal_ratio, cfg.pose_smooth_sigma, clip_ids)
    calib = AUCalibration.fit(canon, cfg.au_units, cfg.au_neutral_percentile)
    if cfg.openface_csv:
        if len(clips) != 1:
            raise InputError(cfg.openface_csv, "--openface-csv applies to a single video")
        aus = read_openface_csv(cfg.openface_csv, clips[0].info.num_frames, clips[0].src_indices)
    else:
        aus = calib.apply(canon)
    audio, speech, formants = [], [], []
    for c in clips:
        n = len(c.src_indices)
        mel = log_mel(c.audio, n, cfg.sample_rate, cfg.fps, cfg.n_mels, cfg.mel_hop, cfg.mel_win, cfg.mel_fmin,
                      cfg.mel_fmax, cfg.audio_rows_fps)
        if cfg.audio_features == "mel":
            audio.append(mel)
        elif cfg.audio_features in ("hubert", "wav2vec2"):
            audio.append(ssl_features(c.audio, n, cfg.sample_rate, cfg.fps, cfg.audio_model,
                                      cfg.audio_features, cfg.audio_rows_fps))
        else:
            raise InputError(None, f"unknown --audio-features {cfg.audio_features!r} (mel, hubert, wav2vec2)")
        speech.append(speech_features_of(mel))  # from the sound itself, whatever the audio features are
        formants.append(formants_of(c.audio, n, cfg.sample_rate, cfg.fps, cfg.mel_hop))
    return {
        "audio": np.concatenate(audio), "speech": np.concatenate(speech), "formants": np.concatenate(formants),
        "aus": aus.astype(np.float32),
        "landmarks": lms_crop,
        "canonical": canon, "extrinsics": ext, "intrinsics": K, "boxes": boxes.astype(np.float32),
        "clip_ids": clip_ids.astype(np.int32), "src_frames": np.concatenate([c.src_indices for c in clips]),
        "mean_shape": shape.astype(np.float32), "_calibration": calib.to_dict(), "_crop_outside": crop_outside,
        "_crop_on_bars": crop_on_bars,
    }


def encode_sample(frame_idx: int, clip_id: int, image: np.ndarray, feats: dict, cfg) -> dict[str, bytes]:
    i = frame_idx
    return {
        "__key__": f"{i:06d}",
        f"image.{cfg.image_format}": sh.encode_image(image, cfg.image_format, cfg.jpeg_quality),
        "masks.png": sh.encode_image(pack_masks(draw_masks(feats["landmarks"][i], cfg.size)), "png"),
        "landmarks.npy": sh.encode_npy(feats["landmarks"][i]),
        "aus.npy": sh.encode_npy(feats["aus"][i]),
        "extrinsics.npy": sh.encode_npy(feats["extrinsics"][i]),
        "intrinsics.npy": sh.encode_npy(feats["intrinsics"][i]),
        "audio.npy": sh.encode_npy(feats["audio"][i]),
        "meta.json": (f'{{"frame": {i}, "clip": {clip_id}, "time": {i / cfg.fps:.4f}}}').encode(),
    }


def iter_crops(clips, feats, frames: np.ndarray, cfg):
    """Yield (frame index, size x size RGB crop) for the given global frame indices, in order."""
    for cid, c in enumerate(clips):
        sel = frames[feats["clip_ids"][frames] == cid]
        if not len(sel):
            continue
        side = float(np.median(feats["boxes"][sel, 2]))
        w, h = scaled_size(c.info.width, c.info.height, int(max(c.info.width, c.info.height)
                                                           * min(1.0, 1.25 * cfg.size / side)))
        scale = w / c.info.width
        pos = 0
        for chunk in prefetch(iter_frames(c.info.path, feats["src_frames"][sel], (w, h), cfg.chunk_frames,
                                          cfg.decode_threads)):
            for img in chunk:
                i = int(sel[pos])
                yield i, crop_frame(img, feats["boxes"][i], cfg.size, scale)
                pos += 1


def plan_shards(num_frames: int, cfg: PreprocessConfig, sample_bytes: int) -> list[dict]:
    n_val = int(round(num_frames * cfg.val_fraction))
    n_train = num_frames - n_val
    if n_train < 1:
        raise InputError(None, f"val_fraction={cfg.val_fraction} leaves no train frames of {num_frames}")
    per = max(1, min(cfg.shard_frames, int(cfg.shard_max_mb * 1e6 / max(1, sample_bytes * 1.25))))
    plan = []
    for split, lo, hi in (("train", 0, n_train), ("val", n_train, num_frames)):
        for k, s in enumerate(range(lo, hi, per)):
            plan.append({"name": f"{split}-{k:06d}.tar", "split": split, "start": s, "end": min(hi, s + per)})
    return plan


def preprocess(inputs, out_dir, cfg: PreprocessConfig | None = None, audio=None) -> dict:
    """Preprocess the clips of one identity into `out_dir`; returns the manifest."""
    cfg = cfg or PreprocessConfig()
    if cfg.image_format not in ("jpg", "png"):
        raise InputError(None, f"image format must be jpg or png, not {cfg.image_format!r}")
    videos = list_videos(inputs if isinstance(inputs, (list, tuple)) else [inputs])
    audio = Path(audio) if audio else None
    if audio is not None and len(videos) > 1:
        raise InputError(audio, "--audio applies to a single video, but several were given")
    check_preprocess_config(cfg)
    out = Path(out_dir)
    created = check_writable_dir(out, owned=is_identity_dir)  # never a user's folder
    # one writer per identity folder, for the whole run: a second preprocess of the same --out fails
    # at once (the lock makes OUT when it is new, and removes it again if nothing else was written)
    with OutputLock(out, "preprocess"):
        return _preprocess_locked(videos, audio, out, created, cfg)


def _preprocess_locked(videos, audio, out: Path, created, cfg: PreprocessConfig) -> dict:
    before = set(os.listdir(out))
    fp = fingerprint(videos, audio, cfg)
    mpath = out / "manifest.json"
    if mpath.is_file():
        old = read_json(mpath, "manifest.json")
        if isinstance(old, dict) and old.get("fingerprint") == fp:
            log.info("%s is up to date: nothing to do", out)
            return old
        raise InputError(out, "already holds a preprocessed identity made from other input or "
                              "settings: choose another --out or delete it")

    clips, offsets = zip(*(align_sound(analyse_clip(v, audio, cfg), cfg) for v in videos))
    feats = compute_features(list(clips), cfg)
    feats["_av_offsets"] = [o.to_dict() for o in offsets]
    check_finite(feats, audio or videos[0])
    try:
        manifest = _write(out, clips, feats, cfg, fp, videos)
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):  # a kill keeps finished shards for resume
            remove_new_entries(out, before, created)  # only what this run added
        if isinstance(exc, OSError):  # a full or read-only disk: one line naming the output
            raise InputError(out, f"writing failed ({exc.strerror or exc})") from None
        raise
    write_marker(out, "preprocess", os.listdir(out))
    return manifest


def is_identity_dir(entries: set[str]) -> bool:
    """A directory this tool wrote: our finished manifest, or the state of an unfinished run."""
    return "manifest.json" in entries or ".work" in entries


def check_finite(feats: dict, source) -> None:
    """Every per-frame array (sound features, landmarks, poses, AUs) finite, or one line naming the input."""
    bad = [k for k, a in feats.items() if isinstance(a, np.ndarray) and a.dtype.kind == "f"
           and not np.isfinite(a).all()]
    if bad:
        raise InputError(source, f"non-finite values (NaN or inf) in the {', '.join(bad)} computed from it")


def _write(out: Path, clips, feats, cfg, fp, videos) -> dict:
    import json

    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    try:  # an unreadable state (a crash while writing it) only means: start over
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    except (OSError, ValueError):
        state = {}
    state = state if isinstance(state, dict) else {}
    if state.get("fingerprint") != fp:  # a different earlier attempt: start over
        for s in state.get("plan", []):  # only the shards that attempt wrote, by name
            name = str(s.get("name", "")) if isinstance(s, dict) else ""
            if name and Path(name).name == name:
                for p in (out / name, out / (name + ".partial")):
                    p.unlink(missing_ok=True)
        first = next(iter_crops(clips, feats, np.array([0]), cfg))
        size = sum(len(v) for k, v in encode_sample(0, 0, first[1], feats, cfg).items() if k != "__key__")
        state = {"fingerprint": fp, "plan": plan_shards(len(feats["aus"]), cfg, size)}
        sh.write_json_atomic(state_path, state)
    arrays = {k: v for k, v in feats.items() if not k.startswith("_") and k != "canonical"}
    tmp = out / "features.partial.npz"
    np.savez(tmp, **arrays)
    tmp.replace(out / "features.npz")
    import soundfile as sf  # the identity's 16 kHz sound, frame-aligned: for sync metrics

    sf.write(out / "audio.partial.wav", identity_sound(clips, cfg), cfg.sample_rate, format="WAV",
             subtype="FLOAT")
    (out / "audio.partial.wav").replace(out / "audio.wav")

    plan = state["plan"]
    todo = [s for s in plan if not (out / s["name"]).is_file()]
    bar = tqdm(total=len(feats["aus"]), desc=f"shards {out.name}", unit="frame",
               initial=sum(s["end"] - s["start"] for s in plan if s not in todo))
    for s in todo:
        frames = np.arange(s["start"], s["end"])
        samples = [encode_sample(i, int(feats["clip_ids"][i]), img, feats, cfg)
                   for i, img in iter_crops(clips, feats, frames, cfg)]
        sh.write_shard(out / s["name"], samples)
        bar.update(len(samples))
    bar.close()

    manifest = build_manifest(out, clips, feats, cfg, fp, videos, plan)
    sh.write_json_atomic(out / "manifest.json", manifest)
    shutil.rmtree(work, ignore_errors=True)
    return manifest


def identity_sound(clips, cfg) -> np.ndarray:
    """The clips' sound end to end, frame i of the identity at sample frame_start(i) exactly: each
    clip's sound fitted to its span of the identity's frame clock (at 25 fps it already is; at 30
    a clip may be one sample longer or shorter than its own round(frames * sr / fps))."""
    starts = frame_start(np.cumsum([0] + [len(c.src_indices) for c in clips]), cfg.sample_rate, cfg.fps)
    parts = []
    for c, a, b in zip(clips, starts[:-1], starts[1:]):
        y = c.audio[: b - a]
        parts.append(np.pad(y, (0, b - a - len(y))))  # zeros, as check_media pads
    return np.concatenate(parts)


def build_manifest(out, clips, feats, cfg, fp, videos, plan) -> dict:
    n = len(feats["aus"])
    starts = np.cumsum([0] + [len(c.src_indices) for c in clips])
    shards = {"train": [], "val": []}
    for s in plan:
        shards[s["split"]].append({"name": s["name"], "start": s["start"], "num_samples": s["end"] - s["start"]})
    return {
        "format": FORMAT,
        "identity": out.name,
        "num_frames": n, "fps": cfg.fps, "sample_rate": cfg.sample_rate, "size": cfg.size,
        "splits": {k: sum(x["num_samples"] for x in v) for k, v in shards.items()},
        "shards": shards,
        "clips": [{"file": v.name, "start": int(st), "num_frames": len(c.src_indices),
                   "source_fps": round(c.info.fps, 4), "source_frames": c.info.num_frames,
                   "source_size": [c.info.width, c.info.height], "audio": c.audio_source,
                   "face_missing_frames": c.missing, "trimmed_frames": c.trimmed_frames, "av_offset": off,
                   "crop_outside_max": round(out_max, 4),  # share of a crop filled by repeated edge pixels
                   "picture": [round(v) for v in c.picture],  # x0, y0, x1, y1: the frame less black bars
                   "crop_on_bars_max": round(bars_max, 4)}  # share of a crop on those black bars
                  for v, c, st, off, out_max, bars_max in zip(videos, clips, starts, feats["_av_offsets"],
                                                              feats["_crop_outside"], feats["_crop_on_bars"])],
        "features": {
            "image": {"ext": cfg.image_format, "shape": [cfg.size, cfg.size, 3]},
            "masks": {"ext": "png", "shape": [cfg.size, cfg.size], "bits": MASK_NAMES},
            "landmarks": {"shape": list(feats["landmarks"].shape[1:]), "units": "crop pixels"},
            "aus": {"shape": [len(AU_NAMES)], "names": AU_NAMES,
                    "source": "openface" if cfg.openface_csv else "geometry"},
            "extrinsics": {"shape": [4, 4], "convention": "world(head)->camera, OpenCV axes"},
            "intrinsics": {"shape": [3, 3]},
            "audio": {"kind": cfg.audio_features, "shape": list(feats["audio"].shape[1:]),
                      "rows_per_frame": int(feats["audio"].shape[1])},
            "speech": {"kind": SPEECH_KIND, "shape": list(feats["speech"].shape[1:])},
            "formants": {"kind": "log F1-F3 z-scored per clip, voicing", "shape": list(feats["formants"].shape[1:])},
        },
        "audio_file": "audio.wav",
        "au_calibration": feats["_calibration"],
        "config": dataclasses.asdict(cfg),
        "versions": versions(),
        "fingerprint": fp,
    }
