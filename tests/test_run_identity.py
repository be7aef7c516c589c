"""Run identity and resume: default run names per configuration, the lr horizon on resume, the
world-size guard of densification."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from hm_talker.config.fit import load_config
from hm_talker.training.run_id import run_name

from conftest import SMALL


def _name(*overrides, config=None):
    return run_name(load_config(config, ["data.root=some/where/ident", *overrides]), config)


def test_default_run_name_is_unique_per_configuration(tmp_path):
    """Two ablations of one identity and seed get different names (the old default gave both
    "ident-seed0"); the same config gets the same name whatever its length, devices or run
    bookkeeping (so --resume with a longer max_steps finds the run); run.name is kept as given."""
    base = _name()
    assert base.startswith("ident-default-seed0-") and len(base.rsplit("-", 1)[1]) == 8
    assert _name("loss.lpips=0") != base
    assert _name("strategy.enabled=false") != base
    assert _name("seed=1") != base and "-seed1-" in _name("seed=1")
    assert _name("trainer.max_steps=9000", "trainer.val_every=7", "run.tags=[a]", "data.num_workers=3") == base
    assert _name("run.name=mine") == "mine"
    exp = tmp_path / "no_lpips.yaml"
    default = Path(__file__).resolve().parents[1] / "experiments" / "hm_talker.yaml"
    exp.write_text(f"base: {default}\nloss:\n  lpips: 0.0\n")  # an experiment on top of the default
    assert _name(config=str(exp)).startswith("ident-no_lpips-seed0-")
    assert _name(config=str(exp)).rsplit("-", 1)[1] == _name("loss.lpips=0").rsplit("-", 1)[1]


def _fit(identity, run_dir, steps, *extra, resume=False):
    from hm_talker.training.fit import fit

    return fit(None, [f"data.root={identity}", f"run.dir={run_dir}", f"trainer.max_steps={steps}", *SMALL,
                      "trainer.val_every=1000", "trainer.limit_val_batches=1", *extra], resume)


def test_resume_with_a_longer_run_warns_that_the_lr_schedule_changes(identity64, tmp_path, caplog):
    """decay_steps=0: 2 steps, then --resume to 4 with the default (unnamed) run: the same run dir is
    found, the checkpoint records horizon 2 then 4, and a warning names both horizons. With
    decay_steps fixed, the resume is silent."""
    caplog.set_level(logging.WARNING, logger="hm_talker")
    first = _fit(identity64, tmp_path, 2)
    assert torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)["lr_schedule"]["horizon"] == 2
    caplog.clear()
    again = _fit(identity64, tmp_path, 4, resume=True)
    assert again == first
    ckpt = torch.load(again / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["lr_schedule"] == {"horizon": 4, "decay_steps": 0, "max_steps": 4}
    msgs = [r.getMessage() for r in caplog.records if "lr schedule" in r.getMessage()]
    assert len(msgs) == 1 and "over 2 steps" in msgs[0] and "over 4" in msgs[0], msgs

    fixed = _fit(identity64, tmp_path, 2, "optim.decay_steps=4")
    caplog.clear()
    assert _fit(identity64, tmp_path, 4, "optim.decay_steps=4", resume=True) == fixed != first
    assert not [r for r in caplog.records if "lr schedule" in r.getMessage()]


