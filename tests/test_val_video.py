"""The validation video of a fit: generated | real | difference, with the held-out frames' sound."""
from __future__ import annotations

import json
import subprocess

from conftest import SMALL


def test_fit_writes_and_logs_a_side_by_side_validation_video(identity64, tmp_path):
    from hm_talker.training.fit import fit

    run = fit(None, [f"data.root={identity64}", f"run.dir={tmp_path}", "run.name=v", "trainer.max_steps=6",
                     "trainer.val_every=6", *SMALL], False)
    video = run / "val" / "step_000006.mp4"
    assert video.is_file()
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,width,height,nb_read_frames", "-of", "json", str(video)],
                         capture_output=True, text=True, check=True)
    streams = {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}
    assert streams["video"]["width"] == 3 * 64 and streams["video"]["height"] == 64
    assert int(streams["video"]["nb_read_frames"]) == 14  # every held-out frame
    assert "audio" in streams
    logged = list((run / "wandb").rglob("media/videos/val/*.mp4"))
    assert logged, "the video was not logged to the (offline) W&B run"
    assert list((run / "wandb").rglob("media/images/val/grid*.png"))


def test_validation_sound_is_cut_on_the_frame_clock(tmp_path):
    """The held-out frames 150..179 of a 30 fps identity: samples 80000..96000 of audio.wav (frame i
    starts at round(i * 16000 / 30)); sr // fps = 533 started them at 79950 (issue 19, item 4)."""
    import numpy as np
    import soundfile as sf

    from hm_talker.training.val_video import ValidationVideo

    sf.write(tmp_path / "audio.wav", np.arange(96000, dtype=np.float32) / 96000, 16000, subtype="FLOAT")
    cb = ValidationVideo(tmp_path / "val", fps=30, identity=tmp_path)
    cb.frames = list(range(150, 180))
    sound = cb._audio()
    assert len(sound) == 16000 and sound[0] == np.float32(80000 / 96000) and sound[-1] == np.float32(95999 / 96000)
