"""An identity's held-out tail as plain files, so `infer` can be scored on it like any sound:

    python -m hm_talker.evaluation.held_out_clip DATA OUT
    hm-talker infer --ckpt CKPT --audio OUT/sound.wav --out OUT/infer.mp4
    hm-talker evaluate --pred OUT/infer.mp4 --target OUT/frames --out OUT/eval_infer

OUT/sound.wav is the held-out frames' stretch of the identity's audio.wav (the sound `evaluate --data` drives
them with), OUT/frames/000000.png ... their real crops as stored in the shards (the frames `evaluate --data`
scores against), one per held-out frame, so `infer`'s video of that sound pairs with them frame by frame.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hm_talker.errors import InputError


def write_held_out_clip(data, out) -> dict:
    """Write OUT/sound.wav and OUT/frames/*.png for DATA's held-out frames; returns what was written."""
    import soundfile as sf
    from PIL import Image

    from hm_talker.data.identity import IdentityFrames, held_out_frames, load_manifest
    from hm_talker.driving.speech import sound_of_frames
    from hm_talker.model.talking_head import to_uint8

    root, out = Path(data), Path(out)
    manifest = load_manifest(root)
    frames = held_out_frames(manifest)
    if not len(frames):
        raise InputError(root, "no held-out frames (preprocess with --set val_fraction=F, F > 0)")
    sound = sound_of_frames(root, manifest["fps"], frames[0], frames[-1])
    if sound is None:
        raise InputError(root, "no audio.wav (preprocessed by an older version): run hm-talker preprocess again")
    (out / "frames").mkdir(parents=True, exist_ok=True)
    sample_rate = sf.info(str(root / "audio.wav")).samplerate
    sf.write(str(out / "sound.wav"), sound, sample_rate)
    stored = IdentityFrames(root, manifest)
    for k, i in enumerate(frames):
        rgb = to_uint8(stored[i]["image"][None])[0]  # the shard's 8-bit image, decoded to [0, 1] and back
        Image.fromarray(rgb).save(out / "frames" / f"{k:06d}.png")
    return {"frames": len(frames), "first": frames[0], "fps": manifest["fps"], "sample_rate": sample_rate,
            "seconds": len(sound) / sample_rate}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="a preprocessed identity folder")
    ap.add_argument("out", help="folder for sound.wav and frames/")
    args = ap.parse_args(argv)
    info = write_held_out_clip(args.data, args.out)
    print(f"{args.out}: {info['frames']} held-out frames from frame {info['first']} at {info['fps']} fps, "
          f"{info['seconds']:.2f} s of sound at {info['sample_rate']} Hz")


if __name__ == "__main__":
    main()
