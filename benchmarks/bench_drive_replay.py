"""What the replayed training frames do to a driven mouth. One table per checkpoint.

Driving (`infer`, `evaluate --drive-video`, the cross-driven validation) replays the training clip's head
pose, upper-face AUs and background under the driving speech. This renders another preprocessed identity's
sound (OTHER: a speaker the model never heard) on the model's identity with each of those held still at
the clip's first frame or replayed, and scores the generated mouth opening against OTHER's real opening
(Pearson r, and the std ratio `amp`). Two lower-face drives:
  * `audio`: the product's path, CMMM's AUs and the implicit feature from OTHER's sound;
  * `measured`: OTHER's AUs measured on its own frames (NOT audio-driven: what the renderer can draw
    from right AUs under the replayed frames).
A gap between the `replayed` and `all still` rows is mouth motion the replayed frames put in or take out.

    python benchmarks/bench_drive_replay.py --ckpt RUN/checkpoints/last.ckpt --data IDENTITY --other OTHER

Each row renders OTHER's whole sound twice and tracks the rendered frames with the face mesh.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from hm_talker.data.identity import IdentityFrames, load_features, load_manifest
from hm_talker.driving.checkpoint import load_module
from hm_talker.driving.render import frame_batch, ping_pong, render
from hm_talker.driving.speech import load_speech, speaker_stats, speech_windows
from hm_talker.metrics.mouth import mouth_opening, mouth_scores
from hm_talker.preprocess.landmarks import LandmarkTrack

HELD = {"replayed": (), "pose still": ("extrinsics", "intrinsics"), "upper AUs still": ("aus",),
        "background still": ("image", "masks"), "all still": ("extrinsics", "intrinsics", "aus", "image", "masks")}
BATCH = 8


def driven_opening(model, root: Path, manifest: dict, other: Path, held: tuple, measured: bool) -> np.ndarray:
    """The generated mouth opening of every frame of OTHER's sound, with `held` members of the replayed
    frames fixed at the clip's first frame; `measured`: OTHER's measured AUs drive the lower face."""
    other_aus = torch.from_numpy(load_features(other)["aus"].astype(np.float32))
    windows = speech_windows(load_speech(other / "audio.wav", manifest), manifest, model.cfg)
    speaker = speaker_stats(model, windows)
    clip, n = IdentityFrames(root, manifest), min(len(windows), len(other_aus))
    first = clip[0]  # fetched once: the clip keeps one shard decoded at a time
    with LandmarkTrack() as track, torch.no_grad():  # the rendered frames tracked as they come, as evaluate does
        for k0 in range(0, n, BATCH):
            ks = list(range(k0, min(n, k0 + BATCH)))
            batch = frame_batch(model, [clip[ping_pong(k, clip.num_frames)] for k in ks], windows, ks, speaker)
            still = frame_batch(model, [first] * len(ks), windows, ks, speaker)
            batch.update({key: still[key] for key in held})
            if measured:
                batch["aus"] = other_aus[ks].to(batch["aus"].device)  # upper AUs too: OTHER's, as measured
            track.update(render(model, batch, measured=measured))
        return mouth_opening(track.landmarks())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True, help="a trained checkpoint")
    ap.add_argument("--data", type=Path, required=True, help="the checkpoint's preprocessed identity")
    ap.add_argument("--other", type=Path, required=True, help="another preprocessed identity: its sound drives")
    ap.add_argument("--rows", nargs="+", default=list(HELD), choices=list(HELD), metavar="ROW",
                    help=f"which rows (default all: {', '.join(HELD)})")
    args = ap.parse_args()
    model, _, _ = load_module(args.ckpt)
    manifest = load_manifest(args.data)
    truth = mouth_opening(load_features(args.other)["landmarks"])
    print(f"| replayed frames ({args.data.name}, driven by {args.other.name}) | lower face | mouth_r | amp |")
    print("|---|---|---:|---:|")
    for name in args.rows:
        for measured in (False, True):
            scores = mouth_scores(driven_opening(model, args.data, manifest, args.other, HELD[name], measured), truth)
            r, amp = (float("nan") if scores[k] is None else scores[k] for k in ("mouth_r", "mouth_amp"))
            print(f"| {name} | {'measured (NOT audio-driven)' if measured else 'audio'} | {r:.3f} | {amp:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
