"""Frames of a loaded model rendered as a stream, a batch at a time: driven by any speech with the head
pose, eyes and background replayed from the training clip (`driven_frames`, `drive`), or the identity's
held-out frames driven by their own audio (`held_out_frames`). Only audio drives the lower face."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np

from hm_talker.constants import LOWER_AU_IDX, MEASURED
from hm_talker.data.identity import IdentityFrames, held_out_frames
from hm_talker.data.windows import Windows
from hm_talker.model.talking_head import to_uint8

REPLAYED = ("image", "masks", "extrinsics", "intrinsics", "aus")  # what a rendered frame takes from a clip frame


def ping_pong(k: int, n: int) -> int:
    """Frame of the training clip shown at output frame k: 0..n-1, n-2..1, 0..n-1, ..."""
    if n == 1:
        return 0
    p = k % (2 * (n - 1))
    return p if p < n else 2 * (n - 1) - p


def frame_batch(model, samples: list[dict], windows: Windows, frames, speaker=None, silent: bool = False) -> dict:
    """One render batch on the model's device: the clip frames' REPLAYED members and the audio inputs
    of `frames` (their windows); `speaker`: the driving speech's SpeakerStats (None: the identity's);
    `silent`: the model hears none of them (a deaf control)."""
    import torch

    batch = {key: torch.stack([s[key] for s in samples]) for key in REPLAYED}
    batch.update(windows.speech_batch(frames))
    device = model.head.face.means.device
    batch = {k: v.to(device) for k, v in batch.items()}
    if speaker is not None:
        batch["speaker"] = speaker
    if silent:
        batch["silent"] = True
    return batch


class RenderTimer:
    """Seconds spent rendering (deformation, rasterisation, the copy to the host), for frames/s."""

    def __init__(self) -> None:
        self.seconds, self.frames = 0.0, 0

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def render(model, batch: dict, timer: RenderTimer | None = None, measured: bool = False,
           with_region: bool = False):
    """uint8 [B, H, W, 3] frames of a batch: predicted AUs drive the lower face (audio only), or with
    `measured` the AUs measured on the batch's frames (a diagnostic: the renderer's upper bound).
    `with_region`: (frames, bool [B, H, W] region the head was drawn in, the real frame outside it)."""
    t = time.perf_counter()
    deformed = model.deform(batch, source=MEASURED) if measured else model.deform(batch)
    composite = model.render(batch, deformed)
    out = to_uint8(composite["rgb"])  # the copy to the host waits for the GPU
    if timer is not None:
        timer.seconds += time.perf_counter() - t
        timer.frames += len(out)
    return (out, composite["face_mask"][:, 0].cpu().numpy() > 0.5) if with_region else out


def render_driven(model, root: Path, manifest: dict, windows: Windows, speaker, batch_size: int = 4,
                  timer: RenderTimer | None = None, silent: bool = False) -> Iterator[np.ndarray]:
    """Yield uint8 [b, H, W, 3] chunks of the frames that `windows` (a driving speech) drives, head pose,
    eyes and background replayed from the training clip forwards then backwards (no jump at the seam)."""
    import torch
    from tqdm import tqdm

    clip = IdentityFrames(root, manifest)
    n = len(windows)
    with torch.no_grad():
        # disable=None: no bar where stderr is not a terminal (log files, validation inside SLURM jobs)
        for k0 in tqdm(range(0, n, batch_size), desc="render", unit="batch", leave=False, disable=None):
            ks = list(range(k0, min(n, k0 + batch_size)))
            samples = [clip[ping_pong(k, clip.num_frames)] for k in ks]
            yield render(model, frame_batch(model, samples, windows, ks, speaker, silent), timer)


def render_held_out(model, root: Path, manifest: dict, windows: Windows, batch_size: int = 8,
                    measured_lower_face: bool = False, speaker=None, offset: int = 0,
                    upper_aus: str = "predicted"):
    """Yield (generated uint8 [b, H, W, 3], real uint8 frames, face masks bool [b, H, W], frame indices,
    render regions bool [b, H, W]: where the head was drawn, the real frame outside) over the identity's
    held-out frames in order, each driven by its own audio: window k - `offset` of `windows` drives frame k
    (`hm_talker.driving.speech.held_out_speech`: the held-out sound as `infer` takes any sound, with its
    `speaker` statistics; the last window repeats if the sound is a frame short).

    The model sees the held-out frames' pose and background, and no measurement of their face: their
    lower-face AUs are zeroed and their eyes and brows take `upper_aus` (`predicted`: CMMM's, from the
    same sound; `constant`: the identity's mean; `frames`: the held-out frames' own, which carry their
    mouth, see `hm_talker.evaluation.protocols.UPPER_AUS_NOTE`). With `measured_lower_face` (a diagnostic,
    not audio-driven) every AU measured on the held-out frames drives the face instead: what the renderer
    can draw when its AU input is right."""
    import torch

    clip = IdentityFrames(root, manifest)
    frames = list(held_out_frames(manifest))
    with torch.no_grad():
        for i in range(0, len(frames), batch_size):
            ks = frames[i:i + batch_size]
            batch = frame_batch(model, [clip[k] for k in ks], windows,
                                [min(max(k - offset, 0), len(windows) - 1) for k in ks], speaker)
            if not measured_lower_face:
                aus = batch["aus"].clone()
                aus[:, LOWER_AU_IDX] = 0.0  # measurements of the real mouth never reach the model
                batch["aus"], batch["upper_au_source"] = aus, upper_aus
            frames_out, region = render(model, batch, measured=measured_lower_face, with_region=True)
            yield (frames_out, to_uint8(batch["image"]), batch["masks"][:, 0].cpu().numpy() > 0.5, np.asarray(ks),
                   region)


def drive(model, root: Path, manifest: dict, audio: np.ndarray, out_path, batch_size: int = 4,
          audio_model: str | None = None, ckpt=None, silent: bool = False) -> dict:
    """Render `out_path` (mp4 with the sound) from a loaded model driven by `audio` (float32 mono at the
    identity's rate); returns frames, seconds, render-only and end-to-end frames/s, render settings.
    `silent`: the model hears none of it (a deaf control; the video still carries the sound)."""
    from hm_talker.driving.speech import speaker_stats, speech_windows
    from hm_talker.preprocess.audio_features import frame_start
    from hm_talker.video_writer import VideoWriter

    start = time.perf_counter()  # end to end: features, decoding, render, encoding
    sr, fps = manifest["sample_rate"], manifest["fps"]
    windows = speech_windows(audio, manifest, model.cfg, audio_model, ckpt)
    speaker = speaker_stats(model, windows)
    n, size = len(windows), manifest["size"]
    timer = RenderTimer()
    sound = np.pad(audio, (0, max(0, frame_start(n, sr, fps) - len(audio))))  # sound exactly as long as the video
    with VideoWriter(Path(out_path), size, size, fps, sound, sr) as video:
        for chunk in render_driven(model, root, manifest, windows, speaker, batch_size, timer, silent):
            video.write(chunk)
    total_s = time.perf_counter() - start
    return {"video": str(out_path), "frames": n, "fps": fps, "seconds": n / fps, "render_fps": timer.fps,
            "end_to_end_fps": n / max(total_s, 1e-9), **getattr(model, "render_info", {})}
