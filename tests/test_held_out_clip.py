"""The held-out tail as files (`python -m hm_talker.evaluation.held_out_clip`): its sound lines up with its frames
(checked against the synthetic talker's known mouth, which is its sound's loudness), its frames are the ones
`evaluate --data` scores, and `infer` of the sound pairs with them frame by frame under `evaluate --pred --target`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from hm_talker.cli import main


def _frame_loudness(wav: np.ndarray, sr: int, fps: float, n: int) -> np.ndarray:
    hop = sr / fps
    return np.array([np.sqrt(np.mean(wav[round(k * hop):round((k + 1) * hop)] ** 2)) for k in range(n)])


def test_held_out_sound_and_frames(identity64, synthetic_clip, tmp_path):
    from hm_talker.data.identity import IdentityFrames, held_out_frames, load_manifest
    from hm_talker.evaluation.held_out_clip import main as export

    export([str(identity64), str(tmp_path / "held")])
    manifest = load_manifest(identity64)
    frames = held_out_frames(manifest)
    pngs = sorted((tmp_path / "held" / "frames").glob("*.png"))
    assert len(pngs) == len(frames) == 14

    wav, sr = sf.read(tmp_path / "held" / "sound.wav", dtype="float32")
    assert len(wav) == round(len(frames) * sr / manifest["fps"])
    # the synthetic mouth is the smoothed loudness of its sound: the exported sound follows the mouth of the
    # frames it was cut for (the truth the clip was drawn from), and not the frames 10 earlier
    loud = _frame_loudness(wav, sr, manifest["fps"], len(frames))
    truth = synthetic_clip.mouth_open
    here = np.corrcoef(loud, truth[frames[0]:frames[-1] + 1])[0, 1]
    before = np.corrcoef(loud, truth[frames[0] - 10:frames[-1] - 9])[0, 1]
    assert here > 0.8 and here > before + 0.3, (here, before)

    stored = IdentityFrames(identity64, manifest)
    for k in (0, len(frames) - 1):
        png = np.asarray(Image.open(pngs[k]), dtype=np.float32) / 255
        np.testing.assert_allclose(png.transpose(2, 0, 1), stored[frames[k]]["image"].numpy(), atol=1 / 510)


def test_infer_of_held_out_sound_scores_against_its_frames(identity64, trained_ckpt, tmp_path, capsys):
    from hm_talker.evaluation.held_out_clip import write_held_out_clip

    info = write_held_out_clip(identity64, tmp_path / "held")
    driven = tmp_path / "held" / "infer.mp4"
    assert main(["infer", "--ckpt", str(trained_ckpt), "--audio", str(tmp_path / "held" / "sound.wav"),
                 "--out", str(driven)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] == info["frames"]
    assert main(["evaluate", "--pred", str(driven), "--target", str(tmp_path / "held" / "frames"),
                 "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_frames"] == info["frames"] == 14
    assert np.isfinite(metrics["psnr_face"]) or np.isfinite(metrics["psnr"])


def test_identity_without_its_sound_is_refused(identity64, tmp_path):
    import shutil

    from hm_talker.errors import InputError
    from hm_talker.evaluation.held_out_clip import write_held_out_clip

    root = tmp_path / "ident"
    shutil.copytree(identity64, root)
    (root / "audio.wav").unlink()
    with pytest.raises(InputError, match="audio.wav"):
        write_held_out_clip(root, tmp_path / "out")
