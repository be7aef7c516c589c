"""CMMM transfer on real speech: a stage-1 CMMM trained on one real speaker (long1, French) predicts the
mouth opening of a speaker it never heard (long2, English) from the sound alone, measured against that
speaker's real opening from its own landmarks (an independent truth, not the AUs CMMM was trained on).

What it guards: a CMMM that ignores its audio, an untrained one, or one whose prediction is not aligned
in time with the speech fails. What it does not claim: that CMMM has learned more than loudness. On
long2 the sound's loudness alone correlates about 0.44 with the opening, above the 0.30-0.35 of this
CMMM (issue 17, item 4 is open); the test prints both so the gap stays visible.
Slow: two real clips preprocessed at 128 px (~50 s) and 400 stage-1 steps (~1-2 min on 2 CPU cores).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import REPO, real_file
from hm_talker.evaluation.cmmm_transfer import load_cmmm, loudness_r, mouth_transfer_r, predicted_opening
from hm_talker.metrics.correlation import pearson
from hm_talker.training.fit_cmmm import fit_cmmm

pytestmark = pytest.mark.slow

BOUND = 0.20  # measured 0.295 (seed 0) and 0.347 (seed 1) over long2's 850 frames after 400 steps
UNTRAINED_MAX = 0.12  # one step: measured 0.03
SHIFTS = (50, 100, 150, 200)  # frames (2-8 s): the prediction against the opening of other moments


@pytest.fixture(scope="module")
def long_pair(tmp_path_factory):
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess

    tmp = tmp_path_factory.mktemp("transfer")
    roots = []
    for name in ("long1_fr_30fps.mp4", "long2_obama_30fps.mp4"):
        out = tmp / name.split(".")[0]
        preprocess([real_file(name)], out, PreprocessConfig(size=128, shard_frames=256))
        roots.append(out)
    return tmp, roots


def _stage1(tmp, root, steps: int):
    """The documented stage-1 recipe (experiments/cmmm_stage1.yaml), shortened to `steps`."""
    run = fit_cmmm(str(REPO / "experiments" / "cmmm_stage1.yaml"),
                   [f"data.roots=[{root}]", f"run.dir={tmp / 'runs'}", f"run.name=s{steps}", "seed=0",
                    f"trainer.max_steps={steps}", f"trainer.val_every={steps}"])
    return load_cmmm(run / "checkpoints" / "last.ckpt")


def test_cmmm_from_one_speaker_predicts_another_speakers_mouth(long_pair):
    tmp, (seen, unseen) = long_pair
    net, cfg = _stage1(tmp, seen, 400)
    r = mouth_transfer_r(net, cfg.data.window, unseen)
    pred, opening = predicted_opening(net, cfg.data.window, unseen)
    shifted = [pearson(pred, np.roll(opening, s)) for s in SHIFTS]
    untrained_net, ucfg = _stage1(tmp, seen, 1)
    untrained = mouth_transfer_r(untrained_net, ucfg.data.window, unseen)
    loud = loudness_r(unseen)
    print(f"long2 (never heard): trained r {r['all']:.3f} (train frames {r['train']:.3f}, held-out {r['val']:.3f}), "
          f"untrained {untrained['all']:.3f}, shifted {[round(x, 3) for x in shifted]}, loudness alone {loud:.3f}")
    assert r["all"] > BOUND, r
    assert abs(untrained["all"]) < UNTRAINED_MAX and r["all"] - untrained["all"] > 0.15, (r, untrained)
    assert max(abs(x) for x in shifted) < r["all"] / 2, shifted  # it follows this moment's speech
