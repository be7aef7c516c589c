"""`hm-talker fit`: config composition, training gain, exact resume, weights_only checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hm_talker.errors import InputError

from conftest import SMALL


def _fit(identity, run_dir, name, steps, *extra, resume=False):
    from hm_talker.training.fit import fit

    overrides = [f"data.root={identity}", f"run.dir={run_dir}", f"run.name={name}",
                 f"trainer.max_steps={steps}", *SMALL, *extra]
    return fit(None, overrides, resume)


def test_default_config_composes():
    from hm_talker.config.fit import default_config_path, load_config

    path = default_config_path()
    assert path.is_file() and path.as_posix().endswith("experiments/hm_talker.yaml")
    cfg = load_config(None, ["data.root=somewhere", "trainer.max_steps=7", "trainer.devices=1",
                             "seed=3", "run.dir=elsewhere"])
    assert cfg.data.root == "somewhere" and cfg.trainer.max_steps == 7 and cfg.seed == 3
    assert cfg.run.dir == "elsewhere" and cfg.trainer.devices == 1
    assert cfg.run.wandb_mode == "auto"
    for section in ("data", "model", "loss", "optim", "strategy", "schedule", "trainer", "run"):
        assert section in cfg
    assert cfg.loss.l1 == 1.0 and cfg.loss.dssim == 0.2


def test_every_ablation_file_composes_and_changes_its_base():
    """Each experiments/ablations/*.yaml loads through its base chain, passes the config checks and trains
    something other than the default model (a file that changes nothing would be a run under a second name)."""
    from hm_talker.config.fit import default_config_path, load_config
    from hm_talker.config.loading import flat_dict

    base = flat_dict(load_config(None, ["data.root=ident"]))
    files = sorted((default_config_path().parent / "ablations").glob("*.yaml"))
    assert len(files) >= 9
    for f in files:
        flat = flat_dict(load_config(str(f), ["data.root=ident"]))
        changed = {k for k, v in flat.items() if base.get(k) != v and not k.startswith("run.")}
        assert changed, f"{f.name} trains the default model"
    held = flat_dict(load_config(str(files[0].with_name("sfp_hold.yaml")), ["data.root=ident"]))
    assert held["sfp.predicted_explicit_grad"] is False and held["sfp.predicted_share"] == 0.25 and held["sfp.enabled"]
    gate = flat_dict(load_config(str(files[0].with_name("sfp_gate.yaml")), ["data.root=ident"]))
    assert gate["sfp.predicted_max_error"] == 0.75 and gate["sfp.predicted_share"] == 1.0 and gate["sfp.enabled"]


def test_wandb_goes_online_only_when_logged_in(tmp_path, monkeypatch):
    from hm_talker.tracking import wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode("auto") == "offline"  # no key, no ~/.netrc
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_mode("auto") == "online"  # what `wandb login` leaves behind
    assert wandb_mode("offline") == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("auto") == "disabled"  # the environment wins
    monkeypatch.delenv("WANDB_MODE")
    with pytest.raises(InputError):
        wandb_mode("sometimes")


def test_unknown_override_key_is_an_input_error():
    from hm_talker.config.fit import load_config

    with pytest.raises(InputError):
        load_config(None, ["data.root=x", "trainer.max_stepz=3"])
    with pytest.raises(InputError):
        load_config(None, ["no_such_section.a=1"])
    with pytest.raises(InputError, match="data.root"):
        load_config(None, [])


def test_cli_parser_registers_fit():
    import argparse

    from hm_talker.training.fit import add_parser

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["fit", "data.root=x", "seed=2", "--resume"])
    assert args.resume and callable(args.func)
    args = parser.parse_args(["fit", "my.yaml", "seed=2"])
    assert args.config == "my.yaml" and args.overrides == ["seed=2"]


# Measured on the 64 px synthetic identity (CPU, 300+50 Gaussians, batch 2, seed 0), face-mask PSNR
# on the 14 val frames: untrained (grey Gaussians) 16.2 dB; after step 1 (face colours taken from
# the first frame) 21.7 dB; after 40 steps 25.2 dB. The test asks for +6 dB over the untrained
# model and +2 dB over the colour-initialised one (so the optimisation itself must help).
PSNR_GAIN_DB = 6.0
PSNR_GAIN_OVER_COLOR_INIT_DB = 2.0


def test_short_fit_raises_val_psnr(identity64, tmp_path):
    def psnr(run):
        return json.loads((run / "summary.json").read_text())["metrics"]["psnr_val"]

    untrained = psnr(_fit(identity64, tmp_path, "untrained", 0))
    color_init = psnr(_fit(identity64, tmp_path, "colorinit", 1))
    run = _fit(identity64, tmp_path, "trained", 40, "trainer.val_every=1000")
    summary = json.loads((run / "summary.json").read_text())
    after = summary["metrics"]["psnr_val"]
    assert after >= untrained + PSNR_GAIN_DB, (untrained, after)
    assert after >= color_init + PSNR_GAIN_OVER_COLOR_INIT_DB, (color_init, after)
    assert summary["name"] == "trained" and summary["seed"] == 0 and "loss.l1" in summary["config"]
    # the checkpoint loads with the safe loader and records the Gaussian counts
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 40
    assert ckpt["num_gaussians"]["face"] == ckpt["state_dict"]["head.face.means"].shape[0]
    assert isinstance(ckpt["config"], dict) and "rng" in ckpt
    assert (run / "wandb").is_dir()  # offline W&B run inside RUN_DIR


def test_resume_is_exact(identity64, tmp_path):
    """N steps in one go == N/2 steps, stop, --resume to N (params, Adam moments, Gaussian count)."""
    n = 8  # stop after 4 (mid-epoch: 68 batches per epoch), densify at step 6, face warm-up ends at 2
    common = [
              f"optim.decay_steps={n}",  # lr schedule independent of max_steps
              "strategy.refine_start=5", "strategy.refine_every=6", "strategy.grad_threshold=1e-5",
              "strategy.reset_every=0", "schedule.mouth_warmup_steps=2",
              "trainer.val_every=1000", "trainer.checkpoint_every=1000", "trainer.limit_val_batches=1"]
    full = _fit(identity64, tmp_path, "full", n, *common)
    _fit(identity64, tmp_path, "split", n // 2, *common)
    split = _fit(identity64, tmp_path, "split", n, *common, resume=True)

    a = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(split / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == n
    assert a["num_gaussians"] == b["num_gaussians"]
    assert a["num_gaussians"]["face"] > 300  # densification happened inside the resumed half
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, va in a["state_dict"].items():
        assert torch.allclose(va, b["state_dict"][key], atol=1e-6, rtol=0), key
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        for k in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(sa[k], sb[k], atol=1e-6, rtol=0)


def test_resume_without_checkpoint_is_an_input_error(identity64, tmp_path):
    with pytest.raises(InputError):
        _fit(identity64, tmp_path, "nothing", 2, resume=True)


def test_lpips_on_lips_runs(identity64, tmp_path):
    """The optional lip LPIPS term (off by default) trains when its weights are available offline."""
    from hm_talker.metrics.image import get_lpips_model
    from hm_talker.metrics.lpips_weights import LpipsWeightsUnavailable

    try:
        get_lpips_model("cpu")
    except LpipsWeightsUnavailable as exc:
        pytest.skip(f"LPIPS weights unavailable: {exc}")
    run = _fit(identity64, tmp_path, "lpips", 3, "loss.lpips=0.1", "loss.lpips_start_step=1",
               "trainer.limit_val_batches=1")
    ckpt_dir = run / "checkpoints"
    assert [p.name for p in ckpt_dir.iterdir()] == ["last.ckpt"]  # the temp file was renamed away


def test_resume_after_kill_matches_an_uninterrupted_run(identity64, tmp_path):
    """SIGKILL a real `hm-talker fit` process after a checkpoint, resume it, compare with a full run."""
    import signal
    import subprocess
    import sys
    import time

    n = 12
    common = [f"data.root={identity64}", f"run.dir={tmp_path}", f"trainer.max_steps={n}", *SMALL,
              f"optim.decay_steps={n}", "strategy.refine_start=5", "strategy.refine_every=6",
              "strategy.grad_threshold=1e-5", "strategy.reset_every=0", "schedule.mouth_warmup_steps=2",
              "trainer.val_every=1000", "trainer.checkpoint_every=2", "trainer.limit_val_batches=1"]
    import os

    exe = [sys.executable, "-m", "hm_talker.cli", "-q", "fit"]
    # a fresh W&B service per process, as for a user: earlier in-process fits left WANDB_SERVICE set,
    # and a shared service still holds the killed run's id
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}
    subprocess.run(exe + common + ["run.name=full"], check=True, capture_output=True, timeout=600, env=env)

    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(exe + common + ["run.name=killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    deadline, step = time.time() + 300, 0
    while proc.poll() is None and time.time() < deadline:
        if last.is_file():
            step = torch.load(last, weights_only=True)["global_step"]
            if step >= 4:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 4 <= step < n, f"could not kill mid-run (checkpoint at step {step})"
    subprocess.run(exe + common + ["run.name=killed", "--resume"], check=True, capture_output=True, timeout=600,
                   env=env)

    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["global_step"] == b["global_step"] == n and a["num_gaussians"] == b["num_gaussians"]
    for key, va in a["state_dict"].items():
        assert torch.allclose(va, b["state_dict"][key], atol=1e-6, rtol=0), key


def test_lpips_terms_join_late_and_train_the_colours(trained_ckpt):
    """Lip and random-patch LPIPS appear from loss.lpips_start_step on, are positive, and give gradients."""
    from datamodules import TalkingHeadDataModule
    from hm_talker.driving.checkpoint import load_module

    module, root, _ = load_module(trained_ckpt)
    module.train()
    dm = TalkingHeadDataModule(str(root), num_workers=0, val_batch_size=2)
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    from hm_talker.training.losses import mask_boxes, random_patches, render_losses

    start, lc, seed = module.cfg.loss.lpips_start_step, module.cfg.loss, module.cfg.seed
    deformed = module.deform(batch)
    out = module.render(batch, deformed)
    assert "lpips" not in render_losses(lc, batch, out, deformed, start - 1, seed)
    terms = render_losses(lc, batch, out, deformed, start, seed)
    assert terms["lpips"] > 0 and terms["lpips_patch"] > 0
    boxes = mask_boxes(batch["masks"][:, 0])
    assert random_patches(boxes, 16, seed, 7) == random_patches(boxes, 16, seed, 7)
    terms["lpips_patch"].backward()
    grads = [p.grad for p in module.face.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_two_process_ddp_fit_on_the_cpu(identity64, tmp_path):
    """`fit trainer.devices=2`: real 2-process DDP (gloo) that trains, checkpoints and keeps equal replicas."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}
    args = [f"data.root={identity64}", f"run.dir={tmp_path}", "run.name=ddp", "trainer.max_steps=4",
            "trainer.devices=2", "trainer.val_every=4", *SMALL]
    script = Path(__file__).with_name("ddp_fit.py")
    r = subprocess.run([sys.executable, str(script), str(tmp_path), *args, "strategy.enabled=false"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    for k in ranks[0]:
        assert abs(ranks[0][k] - ranks[1][k]) <= 1e-5 * (1 + abs(ranks[0][k])), k  # replicas stayed equal
    ckpt = torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["metrics"]["psnr_val"] > 10
    # densification under DDP: tests/test_ddp_densify.py


def test_lpips_training_crops_keep_alexnet_layers_spatial(identity64, tmp_path):
    """The default LPIPS crop gives every AlexNet layer LPIPS compares at least 3x3 pixels (the old
    32 px crop left the last three at 1x1), and a fit with both LPIPS terms from step 1 runs on 64 px
    frames (where the random patch is clipped to the face box)."""
    from hm_talker.metrics.image import get_lpips_model
    from hm_talker.metrics.lpips_weights import LpipsWeightsUnavailable
    from hm_talker.config.fit import LossConfig

    try:
        model = get_lpips_model("cpu")
    except LpipsWeightsUnavailable as exc:
        pytest.skip(f"LPIPS weights unavailable: {exc}")
    side = LossConfig().lpips_crop_size
    feats = model.net(torch.zeros(1, 3, side, side))
    assert min(f.shape[-1] for f in feats) >= 3, [f.shape[-1] for f in feats]
    run = _fit(identity64, tmp_path, "lpips64", 3, "loss.lpips_start_step=1", "trainer.limit_val_batches=1")
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
