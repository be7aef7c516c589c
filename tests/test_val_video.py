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
