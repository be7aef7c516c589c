"""The built-in demo: everything offline, on a synthetic talking face made on the spot."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("hm_talker")


def run_demo(out_dir, seconds: float = 12.0, size: int = 128) -> dict:
    """Synthetic clip -> preprocessed shards; returns the paths it made."""
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clip_path = out / "synthetic_talker.mp4"
    if not clip_path.is_file():
        clip = make_synthetic_clip(clip_path, seconds=seconds, size=max(256, size), seed=0)
        log.info("made %s (%d frames with sound)", clip_path, clip.num_frames)
    ident = out / "identity"
    m = preprocess([clip_path], ident, PreprocessConfig(size=size, shard_frames=32))
    paths = {"clip": clip_path, "identity": ident}
    print(f"demo: synthetic clip      {clip_path}")
    print(f"demo: preprocessed shards {ident} ({m['num_frames']} frames, "
          f"{m['splits']['train']} train / {m['splits']['val']} val)")
    return paths
