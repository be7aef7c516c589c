"""`hm-talker fit [CONFIG] [key=value ...] [--resume]`: train one identity's talking head.

CONFIG is an override file on top of `FitConfig` (default: experiments/hm_talker.yaml, the full model);
key=value arguments override the file. The run lives in RUN_DIR = run.dir/run.name:
checkpoints/last.ckpt (written atomically), W&B files (offline unless WANDB_MODE says
otherwise) and summary.json.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hm_talker.config_utils import load_experiment, merge_overrides
from hm_talker.errors import InputError
from hm_talker.training.config import FitConfig
from hm_talker.validate import (check_fit_config, check_name, refuse_interpolation,
                                refuse_interpolation_overrides)

log = logging.getLogger("hm_talker")
DEFAULT_CONFIG = Path("experiments") / "hm_talker.yaml"  # relative to the repository root
LAST = "last.ckpt"


def _default_config_path() -> Path:
    here = Path(__file__).resolve().parents[2] / DEFAULT_CONFIG  # the source checkout
    return here if here.is_file() else DEFAULT_CONFIG  # else relative to the working directory


def load_config(config_path: str | None, overrides: list[str]) -> DictConfig:
    """FitConfig defaults <- CONFIG file <- key=value overrides (unknown keys are an InputError)."""
    cfg = OmegaConf.structured(FitConfig)
    OmegaConf.set_struct(cfg, True)
    path = Path(config_path) if config_path else _default_config_path()
    user = load_experiment(path)  # with the `base:` files it names, each read safely
    refuse_interpolation(OmegaConf.to_container(user, resolve=False), path)
    refuse_interpolation_overrides(list(overrides))
    try:
        cfg = OmegaConf.merge(cfg, user)
    except OmegaConfBaseException as exc:
        raise InputError(path, f"bad config: {str(exc).splitlines()[0]}") from None
    cfg = merge_overrides(cfg, list(overrides))
    if OmegaConf.is_missing(cfg.data, "root"):
        raise InputError(path, "data.root is not set (pass data.root=IDENTITY_DIR)")
    check_fit_config(cfg, path if config_path else None)
    return cfg


def flat_dict(cfg: DictConfig) -> dict:
    """{'a.b.c': value} of the resolved config (for W&B and summary.json)."""
    out: dict = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc (where `wandb login` puts it); no network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    return base in hosts


def wandb_mode(configured: str) -> str:
    """WANDB_MODE in the environment wins; "auto" is online when logged in, else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if configured == "auto":
        return "online" if wandb_logged_in() else "offline"
    if configured not in ("online", "offline", "disabled"):
        raise InputError(None, f"run.wandb_mode must be auto, online, offline or disabled, not {configured!r}")
    return configured


def run_name(cfg: DictConfig, config_path: str | None = None) -> str:
    """run.name, else `<identity>-<experiment>-seed<seed>-<config hash>` (see training/run_id.py)."""
    from hm_talker.training.run_id import run_name as _default_name

    return _default_name(cfg, config_path)


def prepare_cmmm(module, root: Path, run_dir: Path) -> None:
    """CMMM of a new fit: cmmm.ckpt when given, else stage 1 on this identity (kept in RUN_DIR/cmmm/);
    then the identity's own audio statistics for the speaker normalisation."""
    import numpy as np

    from datamodules.feature_windows import band_stats
    from hm_talker.training.fit_cmmm import load_cmmm_weights, stage1_config, train_cmmm

    cfg = module.cfg
    ckpt = Path(cfg.cmmm.ckpt) if cfg.cmmm.ckpt else run_dir / "cmmm" / LAST
    if not cfg.cmmm.ckpt and cfg.cmmm.pretrain_steps > 0 and not ckpt.is_file():
        log.info("CMMM stage 1 on %s: %d steps", root, cfg.cmmm.pretrain_steps)
        _, metrics = train_cmmm(stage1_config(cfg, root), ckpt, quiet=True)
        log.info("CMMM stage 1: %s", ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    if ckpt.is_file():
        load_cmmm_weights(module.cmmm, ckpt, cfg.model.audio)
    if cfg.cmmm.speaker_norm:
        with np.load(root / "features.npz", allow_pickle=False) as f:
            module.cmmm.set_audio_stats(*band_stats(f["audio"]))
    calibrate_cmmm(module.cmmm, root, cfg.data.window)


def calibrate_cmmm(net, root: Path, window: int) -> None:
    """Statistics of CMMM's raw predictions and of the measured AUs over the identity's training frames."""
    import torch

    from datamodules import FeatureWindowDataModule

    dm = FeatureWindowDataModule([str(root)], batch_size=256, window=window, normalise=False,
                                 speech_window=net.cfg.speech_window)
    dm.setup()
    was_training = net.training
    net.eval()
    pred, meas = [], []
    with torch.no_grad():
        for b in dm.loader("train", shuffle=False):  # every training frame once, in order
            pred.append(net(b["audio_window"], b.get("speech_window"))["raw_aus"])
            meas.append(b["aus"])
    net.train(was_training)
    net.set_calibration(torch.cat(pred), torch.cat(meas))


def _make_checkpoint_callback(dirpath: Path, every: int):
    import lightning as L

    class AtomicLastCheckpoint(L.Callback):
        """checkpoints/last.ckpt every `every` steps and at the last step: temp file then os.replace.

        Saved from on_train_batch_end (as Lightning's ModelCheckpoint does) so that a resume
        continues inside the same epoch, with the train loader fast-forwarded (`ResumableLoader`).
        """

        def __init__(self) -> None:
            self.dirpath = dirpath
            self.saved_step = -1

        def _save(self, trainer) -> None:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            tmp = self.dirpath / f".{LAST}.tmp-{os.getpid()}"
            # weights_only=False: a full checkpoint (optimiser, loops); every rank calls it, rank 0 writes
            trainer.save_checkpoint(tmp, weights_only=False)
            if trainer.is_global_zero:
                os.replace(tmp, self.dirpath / LAST)  # atomic: readers never see a partial file
            trainer.strategy.barrier()
            self.saved_step = trainer.global_step

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            step = trainer.global_step
            if (every > 0 and step % every == 0) or step >= trainer.max_steps:
                self._save(trainer)

        def on_train_end(self, trainer, pl_module) -> None:
            if self.saved_step != trainer.global_step:  # stopped early (e.g. should_stop)
                self._save(trainer)

    return AtomicLastCheckpoint()


class ResumableLoader:
    """Wraps the train loader so Lightning saves / restores the position inside the epoch.

    The shard loader is not resumable by itself; the order of an epoch is a function of
    (seed, epoch), so resuming re-reads the epoch and skips the batches already trained on.
    """

    def __init__(self, loader, trainer_fn) -> None:
        self.loader, self.trainer_fn, self._skip = loader, trainer_fn, 0

    def __len__(self) -> int:
        return len(self.loader)  # TypeError when the wrapped loader has no length, as it would

    def __iter__(self):
        skip, self._skip = self._skip, 0
        for i, batch in enumerate(self.loader):
            if i >= skip:
                yield batch

    def state_dict(self) -> dict:
        trainer = self.trainer_fn()
        # batches that entered training steps this epoch (not the one the fetcher prefetched)
        return {"consumed": int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)}

    def load_state_dict(self, state: dict) -> None:
        self._skip = int(state.get("consumed", 0))


def fit(config_path: str | None, overrides: list[str], resume: bool, callbacks: list | None = None) -> Path:
    """Train (or resume) one run; returns RUN_DIR. `callbacks`: extra Lightning callbacks."""
    from hm_talker.training.run_guard import run_dir_guard

    cfg = load_config(config_path, overrides)
    name = run_name(cfg, config_path)
    check_name("run.name", name)  # a name derived from the identity folder too
    run_dir = Path(cfg.run.dir) / name
    with run_dir_guard(run_dir, run_dir / "checkpoints" / LAST):
        return _fit(cfg, name, resume, callbacks)


def _fit(cfg: DictConfig, name: str, resume: bool, callbacks: list | None) -> Path:
    root = Path(cfg.data.root)
    from datamodules.talking_head import TalkingHeadDataModule, load_manifest

    manifest = load_manifest(root)
    # the audio encoder's input follows the identity's features (mel, HuBERT, ...)
    k, d = manifest["features"]["audio"]["shape"]
    cfg.model.audio.rows_per_frame, cfg.model.audio.feature_dim = int(k), int(d)
    if cfg.model.audio.window != cfg.data.window:
        raise InputError(None, f"model.audio.window={cfg.model.audio.window} must equal data.window={cfg.data.window}")

    from hm_talker.launch import slurm_env
    from hm_talker.launch.preempt import Preemption

    cfg.trainer.devices, cfg.trainer.num_nodes = slurm_env.devices_and_nodes(cfg.trainer.devices, cfg.trainer.num_nodes)
    run_dir = Path(cfg.run.dir) / name
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / LAST
    resume = slurm_env.auto_resume(resume, last)  # a requeued SLURM job continues its checkpoint
    if resume and not last.is_file():
        raise InputError(last, "nothing to resume (no checkpoint)")
    if resume:
        from hm_talker.safe_read import load_checkpoint
        if "state_dict" not in load_checkpoint(last):  # truncated / unsafe: one line, before training
            raise InputError(last, "not an hm-talker checkpoint (no state_dict)")
    if not resume and last.is_file():
        raise InputError(run_dir, "run exists: pass --resume to continue it, or set run.name")
    run_dir.mkdir(parents=True, exist_ok=True)

    import lightning as L
    import torch
    from lightning.pytorch.loggers import WandbLogger
    from lightning.pytorch.utilities import rank_zero_only

    from hm_talker.errors import Interrupted
    from hm_talker.log_setup import adopt_library_loggers
    from hm_talker.training.ddp_gaussians import DistributedGaussians
    from hm_talker.training.hmmm_module import HMMMModule
    from hm_talker.training.interrupt import GracefulInterrupt
    from hm_talker.training.lr_horizon import LrScheduleRecord
    from hm_talker.training.progress import ProgressLines
    from hm_talker.training.val_video import ValidationVideo

    adopt_library_loggers()  # `import lightning` adds a handler of its own: each line would print twice
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    flat = flat_dict(cfg)
    if rank_zero_only.rank == 0:  # one writer per job, not per rank
        OmegaConf.save(cfg, run_dir / "config.yaml")
    from datamodules.talking_head import load_features
    mean_shape = load_features(root)["mean_shape"]  # every array checked finite, at the door
    module = HMMMModule(OmegaConf.to_object(cfg), mean_shape, config_dict=OmegaConf.to_container(cfg, resolve=True))
    if not resume:  # a resumed run restores CMMM from its own checkpoint
        prepare_cmmm(module, root, run_dir)
    class _DataModule(TalkingHeadDataModule):
        def train_dataloader(self):
            return ResumableLoader(super().train_dataloader(), lambda: self.trainer)

    dm = _DataModule(str(root), batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers,
                               window=cfg.data.window, shuffle_buffer=cfg.data.shuffle_buffer, seed=cfg.seed,
                               val_batch_size=cfg.data.val_batch_size, speech_window=cfg.cmmm.net.speech_window,
                               max_corrupt_fraction=cfg.data.max_corrupt_fraction,
                               corrupt_warnings=cfg.data.corrupt_warnings)
    interrupt = GracefulInterrupt()

    mode = wandb_mode(cfg.run.wandb_mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    logger = WandbLogger(name=name, id=name, project=cfg.run.project, group=cfg.run.group or None,
                         tags=list(cfg.run.tags) or None, save_dir=str(run_dir), mode=mode,
                         resume="allow", config=flat)
    logger._wandb_init.pop("anonymous", None)  # else wandb warns that the (unused) setting is deprecated
    t = cfg.trainer
    preemption = Preemption()
    trainer = L.Trainer(
        max_steps=t.max_steps, devices=t.devices,
        # DDP must allow unused parameters: the face deformation sits out the mouth warm-up
        strategy="ddp_find_unused_parameters_true" if t.devices > 1 or t.num_nodes > 1 else "auto",
        num_nodes=t.num_nodes, accelerator=t.accelerator, precision=t.precision,
        logger=logger, callbacks=[_make_checkpoint_callback(ckpt_dir, t.checkpoint_every),
                                  ValidationVideo(run_dir / "val", manifest["fps"], identity=root),
                                  LrScheduleRecord(cfg), ProgressLines(t.progress_every),
                                  preemption, DistributedGaussians(), interrupt, *(callbacks or [])],
        plugins=slurm_env.plugins(),
        enable_checkpointing=False, log_every_n_steps=max(1, t.log_every),
        val_check_interval=t.val_every, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        limit_val_batches=None if t.limit_val_batches < 0 else t.limit_val_batches,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(run_dir),
    )
    torch.set_float32_matmul_precision("high")
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None, weights_only=True)
    if preemption.requested:  # stopped by the requeue signal: no validation or summary yet
        preemption.requeue(trainer, logger)
        return run_dir
    if interrupt.stopped:
        raise Interrupted(f"interrupted at step {trainer.global_step}: checkpoint saved to {last}")
    results = trainer.validate(module, datamodule=dm, verbose=False, weights_only=True)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    if trainer.is_global_zero:
        summary = {"name": name, "group": cfg.run.group, "seed": cfg.seed, "tags": list(cfg.run.tags),
                   "config": flat, "metrics": metrics, "global_step": trainer.global_step,
                   "num_gaussians": {"face": module.face.num, "mouth": module.mouth.num}}
        tmp = run_dir / ".summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, run_dir / "summary.json")
    logger.experiment.finish() if hasattr(logger.experiment, "finish") else None
    return run_dir


def _run_fit(args) -> int:
    run_dir = fit(args.config, args.overrides, args.resume)
    summary = run_dir / "summary.json"
    if summary.is_file():
        psnr = json.loads(summary.read_text())["metrics"].get("psnr_val")
        print(f"{run_dir}: psnr_val={psnr:.2f} dB" if psnr is not None else str(run_dir))
    return 0


def add_parser(subparsers) -> None:
    """Register `hm-talker fit [CONFIG] [key=value ...] [--resume]`."""
    p = subparsers.add_parser("fit", help="train a person-specific talking head on a preprocessed identity")
    p.add_argument("config", nargs="?", default=None,
                   help=f"override file on top of the defaults (default {DEFAULT_CONFIG.as_posix()})")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. data.root=ident trainer.max_steps=2000 seed=1")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR/checkpoints/last.ckpt exactly")
    p.set_defaults(func=_fit_entry)


def _fit_entry(args) -> int:
    # argparse cannot tell `fit a=1` (no CONFIG) from `fit cfg.yaml`: a first positional with '=' is an override
    if args.config is not None and "=" in args.config:
        args.overrides = [args.config, *args.overrides]
        args.config = None
    return _run_fit(args)
