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

from hm_talker.errors import InputError


def infer(ckpt, audio_path, out_path, data_root=None, audio_model=None, batch_size: int = 4,
          device: str = "auto") -> dict:
    """Load the checkpoint and drive it with `audio_path` (hm_talker.driving.render.drive)."""
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.driving.render import drive
    from hm_talker.driving.speech import load_speech
    from hm_talker.safe_output import check_output_file

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(None, f"--batch-size {batch_size} must be a positive integer")
    check_output_file(out_path)  # at once, not after the render
    model, root, manifest = load_module(ckpt, data_root, device)
    return drive(model, root, manifest, load_speech(audio_path, manifest), out_path, batch_size, audio_model, ckpt)


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
