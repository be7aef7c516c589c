"""`hm-talker fit [CONFIG] [key=value ...] [--resume]`: train one identity's talking head.

CONFIG is an override file on top of `FitConfig` (default: experiments/hm_talker.yaml, the default model);
key=value arguments override the file (hm_talker/config/fit.py). A fit composes: the run (name,
directory, W&B, summary: training/run.py), stage 1 (CMMM and its cache: training/stage1.py), the
Lightning data layer (datamodules/) and the Trainer (training/trainer.py).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hm_talker.config.fit import DEFAULT_EXPERIMENT, load_config
from hm_talker.errors import InputError
from hm_talker.training.run import Run

log = logging.getLogger("hm_talker")


def fit(config_path: str | None, overrides: list[str], resume: bool, callbacks: list | None = None) -> Path:
    """Train (or resume) one run; returns RUN_DIR. `callbacks`: extra Lightning callbacks."""
    from hm_talker.training.run_guard import run_dir_guard

    cfg = load_config(config_path, overrides)
    run = Run.of(cfg, config_path)
    with run_dir_guard(run.dir, run.last):
        return _fit(cfg, run, resume, callbacks)


def _fit(cfg: DictConfig, run: Run, resume: bool, callbacks: list | None) -> Path:
    from hm_talker.data.identity import check_training_frames, load_features, load_manifest, speech_rows
    from hm_talker.preprocess.media import require_ffmpeg
    from hm_talker.training import slurm_env

    root = Path(cfg.data.root)
    manifest = load_manifest(root)
    check_training_frames(root, manifest)  # shards corrupt throughout: now, not after stage 1
    require_ffmpeg(why=" (fit writes its validation videos with it)")  # now, not after training
    # the audio encoder's input follows the identity's features (mel, HuBERT, ...)
    k, d = manifest["features"]["audio"]["shape"]
    cfg.model.audio.rows_per_frame, cfg.model.audio.feature_dim = int(k), int(d)
    cfg.cmmm.net.speech_rows = speech_rows(manifest)
    if cfg.model.audio.window != cfg.data.window:
        raise InputError(None, f"model.audio.window={cfg.model.audio.window} must equal data.window={cfg.data.window}")
    cfg.trainer.devices, cfg.trainer.num_nodes = slurm_env.devices_and_nodes(cfg.trainer.devices, cfg.trainer.num_nodes)
    resume = run.check_resume(resume, cfg.trainer.max_steps)
    slurm_env.bind_local_gpu(cfg.trainer.accelerator)  # this rank's GPU is `cuda` from here on

    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only

    from hm_talker.log_setup import adopt_library_loggers
    from hm_talker.training.hmmm_module import HMMMModule
    from hm_talker.training.preemption import Preemption
    from hm_talker.training.trainer import deterministic_cpu

    adopt_library_loggers()  # `import lightning` adds a handler of its own: each line would print twice
    lip_sync = lip_sync_callbacks(cfg, root, manifest, run.dir)  # references read now: a bad one fails before training
    callbacks = [*lip_sync, *(callbacks or [])]
    features = load_features(root)  # every array checked finite, at the door
    if cfg.model.face_region_chin_measure and cfg.model.face_region == "pose":
        cfg.model.face_region_chin = _region_chin(cfg, features, manifest, run.last if resume else None)
    run.start(cfg, rank_zero_only.rank == 0)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if rank_zero_only.rank == 0:
        from hm_talker.training.densify import warn_schedule

        warn_schedule(cfg.strategy, cfg.trainer.max_steps)  # once per job: a run with no opacity reset says so
    module = HMMMModule(OmegaConf.to_object(cfg), features["mean_shape"], config_dict=OmegaConf.to_container(cfg, resolve=True))
    preemption = Preemption().install()  # from here to the end: the requeue signal never kills the job
    try:
        with deterministic_cpu(cfg.trainer.deterministic_cpu, cfg.trainer.accelerator):
            return _train(cfg, run, resume, root, manifest, module, lip_sync, callbacks, preemption)
    finally:
        preemption.uninstall()


def _region_chin(cfg, features: dict, manifest: dict, resumed_ckpt: Path | None) -> float:
    """The rendered region's chin room: the identity's widest training jaw plus the margin (model/jaw_room.py); a
    resumed run keeps the room it started with (also one started before the room was measured)."""
    if resumed_ckpt is not None:
        from hm_talker.safe_read import load_checkpoint

        stored = load_checkpoint(resumed_ckpt).get("config", {}).get("model", {}).get("face_region_chin")
        if stored is not None:
            return float(stored)
    from hm_talker.model.jaw_room import jaw_room

    chin = jaw_room(features, slice(0, int(manifest["splits"]["train"])), cfg.model.face_region_chin_margin)
    log.info("rendered region: the chin reaches %.3f of the nose-to-chin distance below the mean shape's "
             "(the training frames' widest jaw + %.2f)", chin, cfg.model.face_region_chin_margin)
    return chin


def _train(cfg, run: Run, resume: bool, root: Path, manifest: dict, module, lip_sync, callbacks, preemption) -> Path:
    import torch
    from lightning.pytorch.utilities import rank_zero_only

    from datamodules import TalkingHeadDataModule
    from hm_talker.config.loading import flat_dict
    from hm_talker.errors import Interrupted
    from hm_talker.training.preemption import Preempted
    from hm_talker.training.stage1 import prepare_cmmm
    from hm_talker.training.trainer import build_trainer

    flat = flat_dict(cfg)
    if not resume:  # a resumed run restores CMMM from its own checkpoint
        try:  # stage 1 by rank zero, once; the others wait for it
            prepare_cmmm(module, root, run.dir, rank_zero_only.rank, should_stop=lambda: preemption.received)
        except Preempted:
            log.warning("preemption signal during CMMM stage 1: nothing of it kept, requeueing")
            preemption.requeue(rank_zero=rank_zero_only.rank == 0)
            return run.dir
    dm = TalkingHeadDataModule(str(root), batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers,
                               window=cfg.data.window, shuffle_buffer=cfg.data.shuffle_buffer, seed=cfg.seed,
                               val_batch_size=cfg.data.val_batch_size, speech_window=cfg.cmmm.net.speech_window,
                               max_corrupt_fraction=cfg.data.max_corrupt_fraction,
                               corrupt_warnings=cfg.data.corrupt_warnings, formants=cfg.cmmm.net.formant_share > 0)
    logger = run.logger(cfg, flat)
    fitting = build_trainer(cfg, run.dir, logger, manifest["fps"], root, callbacks, preemption)
    trainer = fitting.trainer
    torch.set_float32_matmul_precision("high")
    trainer.fit(module, datamodule=dm, ckpt_path=str(run.last) if resume else None, weights_only=True)
    if fitting.preemption.requested:  # stopped by the requeue signal: no validation or summary yet
        fitting.preemption.requeue(trainer, logger)
        return run.dir
    if fitting.interrupt.stopped:
        raise Interrupted(f"interrupted at step {trainer.global_step}: checkpoint saved to {run.last}")
    results = trainer.validate(module, datamodule=dm, verbose=False, weights_only=True)
    if preemption.after_final_validation(trainer):  # last.ckpt holds the last step: the requeued job validates
        log.warning("preemption signal during the final validation: requeueing (step %d is saved; the summary "
                    "is written when the requeued job validates it)", trainer.global_step)
        preemption.requeue(trainer, logger)
        return run.dir
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    for cb in lip_sync:  # the lip-sync scores as computed (the logged ones passed through float32)
        metrics.update(cb.last)
    metrics = {k: finite_or_none(v) for k, v in metrics.items()}
    if trainer.is_global_zero:
        run.write_summary({"name": run.name, "group": cfg.run.group, "seed": cfg.seed, "tags": list(cfg.run.tags),
                           "config": flat, "metrics": metrics, "global_step": trainer.global_step,
                           "num_gaussians": {"face": module.face.num, "mouth": module.mouth.num}})
    logger.experiment.finish() if hasattr(logger.experiment, "finish") else None
    close_process_group()
    return run.dir


def close_process_group() -> None:
    """End a finished DDP job together: every rank waits for the others (rank zero writes the summary and
    closes W&B last), then the process group is destroyed. Lightning destroys only NCCL groups at exit; a gloo
    group left to the interpreter's teardown could abort a rank after its work was done ("terminate called
    without an active exception"), and SLURM then marks a finished job FAILED."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def lip_sync_callbacks(cfg: DictConfig, root: Path, manifest: dict, run_dir: Path) -> list:
    """The lip-sync validation (eval.*): its references read and checked now, so a reference without sound
    or face fails before any training, in one line."""
    if not cfg.eval.lip_sync:
        return []
    from hm_talker.evaluation.validation import load_references
    from hm_talker.training.lip_sync import LipSyncValidation

    references = load_references(cfg.eval, manifest["sample_rate"])
    return [LipSyncValidation(root, manifest, references, run_dir / "val", cfg.eval.deaf_control)]


def finite_or_none(v: float) -> float | None:
    """summary.json holds null where a metric does not apply (NaN is not JSON)."""
    return v if math.isfinite(v) else None


def add_parser(subparsers) -> None:
    """Register `hm-talker fit [CONFIG] [key=value ...] [--resume]`."""
    p = subparsers.add_parser("fit", help="train a person-specific talking head on a preprocessed identity")
    p.add_argument("config", nargs="?", default=None,
                   help=f"override file on top of the defaults (default {DEFAULT_EXPERIMENT.as_posix()})")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. data.root=ident trainer.max_steps=2000 seed=1")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR/checkpoints/last.ckpt exactly")
    p.set_defaults(func=_entry)


def _entry(args) -> int:
    # argparse cannot tell `fit a=1` (no CONFIG) from `fit cfg.yaml`: a first positional with '=' is an override
    if args.config is not None and "=" in args.config:
        args.overrides = [args.config, *args.overrides]
        args.config = None
    run_dir = fit(args.config, args.overrides, args.resume)
    summary = run_dir / "summary.json"
    if summary.is_file():
        psnr = json.loads(summary.read_text())["metrics"].get("psnr_val")
        print(f"{run_dir}: psnr_val={psnr:.2f} dB" if psnr is not None else str(run_dir))
    return 0
