"""Where cross-driven lip sync is lost: in the AUs CMMM predicts from the other speaker's sound, or in the
renderer that draws them. For each checkpoint, driven by a reference video's sound (its first --seconds):

- pred AUs vs ref: Pearson r between the predicted mouth AUs (AU25 + AU26, what drives the lower face) and the
  reference speaker's real mouth opening (inner-lip gap over inter-ocular distance, from its video), and the
  best r with the prediction shifted by up to 4 frames either way (and that shift);
- rendered vs pred AUs: r between the driven video's mouth opening (measured on its frames) and those AUs;
- rendered vs ref: the cross-driven mouth_r of `evaluate --drive-video` (the same frames, the same reference).

A rendered mouth that follows its AUs closely (second column near 1) can follow the speech no better than the
first column: the rest of the gap is the audio's.

    python benchmarks/bench_cross_chain.py --ckpt RUN/checkpoints/last.ckpt [...] --ref OTHER_SPEAKER.mp4 \
        [--seconds 20] [--out DIR]

Prints a markdown table. A few minutes per checkpoint on a CPU at 256 px.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def predicted_opening(model, root: Path, manifest: dict, audio: np.ndarray, ckpt: Path,
                      batch_size: int = 16) -> np.ndarray:
    """[T] AU25 + AU26 that CMMM predicts for every driven frame, on the path `infer` takes."""
    import torch

    from hm_talker.constants import AU_NAMES
    from hm_talker.data.identity import IdentityFrames
    from hm_talker.driving.render import frame_batch, ping_pong
    from hm_talker.driving.speech import speaker_stats, speech_windows

    windows = speech_windows(audio, manifest, model.cfg, None, ckpt)
    speaker = speaker_stats(model, windows)
    clip, n = IdentityFrames(root, manifest), len(windows)
    mouth = [AU_NAMES.index("AU25"), AU_NAMES.index("AU26")]
    out = []
    with torch.no_grad():
        for k0 in range(0, n, batch_size):
            ks = list(range(k0, min(n, k0 + batch_size)))
            batch = frame_batch(model, [clip[ping_pong(k, clip.num_frames)] for k in ks], windows, ks, speaker)
            out.append(model.conditions(batch)["pred_aus"][:, mouth].sum(1).cpu().numpy())
    return np.concatenate(out)


def measure(ckpt: Path, ref_path: Path, seconds: float, out: Path) -> dict:
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.evaluation.protocols import cross_reference, reference_video, shift_frames
    from hm_talker.evaluation.scoring import video_landmarks
    from hm_talker.metrics.correlation import pearson
    from hm_talker.metrics.mouth import lagged_correlations, mouth_opening

    model, root, manifest = load_module(ckpt, device="cpu")
    ref = reference_video(ref_path, manifest["sample_rate"], seconds)
    video = out / "cross.mp4"
    metrics = cross_reference(model, root, manifest, ref, video)
    pred = predicted_opening(model, root, manifest, ref.audio, ckpt)
    rendered = mouth_opening(video_landmarks(video))
    real = mouth_opening(shift_frames(ref.landmarks, ref.lag))  # the reference's mouth in step with its sound
    n = min(len(pred), len(rendered), len(real))
    lags = {k: v for k, v in lagged_correlations(pred[:n], real[:n]).items() if v is not None}
    best = max(lags, key=lags.get)
    return {"pred_ref": pearson(pred[:n], real[:n]), "pred_ref_best": lags[best], "pred_lag": best,
            "rendered_pred": pearson(rendered[:n], pred[:n]), "rendered_ref": pearson(rendered[:n], real[:n]),
            "mouth_r": metrics.get("mouth_r"), "frames": n}


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def main() -> None:
    from driven_args import driven_checkpoints

    args, checkpoints = driven_checkpoints(__doc__, "cross_chain_")
    print("| checkpoint | frames | pred AUs vs ref | best within ±4 frames (lag) | rendered vs pred AUs | rendered vs ref "
          "| cross mouth_r (evaluate) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for ckpt, name, d in checkpoints:
        m = measure(ckpt, args.ref, args.seconds, d)
        best = f"{_fmt(m['pred_ref_best'])} ({m['pred_lag']:+d})"
        cells = " | ".join(_fmt(m[k]) for k in ("rendered_pred", "rendered_ref", "mouth_r"))
        print(f"| {name} | {m['frames']} | {_fmt(m['pred_ref'])} | {best} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
