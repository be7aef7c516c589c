"""Stage 1 of HM-Talker: CMMM trained alone on audio features and measured AUs (one or several
identities), and the CMMM an identity's fit starts from: `cmmm.ckpt` when given, else stage 1 on the
identity's own features, from the CMMM cache (run.dir/cmmm-cache, training/cmmm_cache.py: trained once
per job and once for every run with the same identity, stage-1 settings and seed). Either way
it is then normalised by the identity's audio statistics and calibrated on its measured AUs.

Checkpoints: state_dict keys `net.*`, the config as a plain dict (loads with weights_only=True).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import OmegaConf

from hm_talker.config.cmmm import CMMMFitConfig
from hm_talker.errors import InputError

log = logging.getLogger("hm_talker")
CALIBRATION_BATCH = 256  # frames per forward pass when calibrating on the identity's training frames


def build_net(cfg: CMMMFitConfig):
    from hm_talker.model.cmmm import CMMM

    cfg.cmmm.net.explicit_dim = cfg.audio.condition_dim  # the explicit feature fuses with the implicit one
    return CMMM(cfg.audio, cfg.cmmm.net, cfg.explicit_aus)


def train_cmmm(cfg: CMMMFitConfig, ckpt_path: Path, logger=False, config_dict: dict | None = None,
               quiet: bool = False, progress_every: int = 100, should_stop=None):
    """Train the CMMM of `cfg` on cfg.data.roots and save `ckpt_path`; returns (module, val metrics).

    quiet: inside an identity's fit, Lightning's start-up lines of this inner Trainer are not repeated.
    Progress (`stage 1: step S/N | steps/s | loss | left`) goes to stdout as `fit`'s does. `should_stop()`
    True (the requeue signal): training stops at the next step, nothing is saved, `Preempted` is raised.
    The inner Trainer uses this rank's own device (slurm_env.local_device)."""
    if quiet:
        lightning_log = logging.getLogger("lightning.pytorch")
        level = lightning_log.level
        lightning_log.setLevel(logging.WARNING)
        try:
            return train_cmmm(cfg, ckpt_path, logger, config_dict, progress_every=progress_every,
                              should_stop=should_stop)
        finally:
            lightning_log.setLevel(level)
    import time

    import lightning as L
    import numpy as np
    import torch

    from datamodules import FeatureWindowDataModule
    from hm_talker.training import slurm_env
    from hm_talker.training.cmmm_module import CMMMModule
    from hm_talker.training.preemption import Preempted, StopWhen
    from hm_talker.training.progress import ProgressLines
    from hm_talker.training.trainer import deterministic_cpu

    for root in cfg.data.roots:
        if not (Path(root) / "features.npz").is_file():
            raise InputError(root, "not a preprocessed identity (no features.npz)")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    net = build_net(cfg)
    module = CMMMModule(net, cfg.cmmm.loss, cfg.cmmm.lr, cfg.cmmm.weight_decay,
                        config_dict=config_dict or OmegaConf.to_container(OmegaConf.structured(cfg)))
    dm = FeatureWindowDataModule(list(cfg.data.roots), batch_size=cfg.data.batch_size, window=cfg.data.window,
                                 shifts=list(cfg.cmmm.loss.shifts), normalise=cfg.cmmm.speaker_norm, seed=cfg.seed,
                                 num_workers=cfg.data.num_workers, speech_window=cfg.cmmm.net.speech_window,
                                 formants=cfg.cmmm.net.formant_share > 0)
    t = cfg.trainer
    dm.setup()
    train_aus = np.concatenate([d.aus[:d.num_train] for d in dm.idents])
    net.init_au_bias(torch.from_numpy(train_aus.mean(0)))  # start from the mean predictor
    accelerator, devices = slurm_env.local_device(t.accelerator)
    trainer = L.Trainer(max_steps=t.max_steps, accelerator=accelerator, devices=devices, logger=logger,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        val_check_interval=None if t.val_every <= 0 else min(t.val_every, t.max_steps),
                        check_val_every_n_epoch=None, num_sanity_val_steps=0, log_every_n_steps=max(1, t.log_every),
                        callbacks=[ProgressLines(progress_every, prefix="stage 1: "), StopWhen(should_stop)],
                        default_root_dir=str(ckpt_path.parent))
    start = time.perf_counter()
    with deterministic_cpu(t.deterministic_cpu, accelerator):
        trainer.fit(module, datamodule=dm)
        if should_stop is not None and should_stop():
            raise Preempted(f"stage 1 stopped at step {trainer.global_step} by the requeue signal")
        if net.formant_head is not None:
            from hm_talker.training.formant_head import fit_formant_head

            fit_formant_head(net, [(d.windows, d.num_train) for d in dm.idents], cfg.cmmm.loss.au_weights, cfg.seed)
    trainer.validate(module, datamodule=dm, verbose=False)
    metrics = module.val_metrics()
    log.info("CMMM stage 1: %d steps x %d frames in %.0f s on %s", t.max_steps, cfg.data.batch_size,
             time.perf_counter() - start, ", ".join(str(r) for r in cfg.data.roots))
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_path.with_name(f".{ckpt_path.name}.tmp-{os.getpid()}")
    trainer.save_checkpoint(tmp, weights_only=True)
    os.replace(tmp, ckpt_path)
    return module, metrics


def load_cmmm_weights(net, path, audio_cfg) -> None:
    """Load a CMMM checkpoint's `net.*` weights into `net`; an InputError when it does not fit."""
    from hm_talker.safe_read import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such CMMM checkpoint")
    ckpt = load_checkpoint(path, "CMMM checkpoint")
    state = {k[4:]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("net.")}
    if not state:
        raise InputError(path, "not a CMMM checkpoint (no net.* weights)")
    trained = (ckpt.get("config") or {}).get("audio", {})
    for key in ("feature_dim", "rows_per_frame", "window", "condition_dim"):
        if key in trained and trained[key] != getattr(audio_cfg, key):
            raise InputError(path, f"CMMM was trained with audio.{key}={trained[key]}, this fit has "
                                   f"{getattr(audio_cfg, key)}")
    share = ((ckpt.get("config") or {}).get("cmmm", {}).get("net", {}) or {}).get("formant_share", 0.0)
    if (share > 0) != (net.formant_head is not None):
        raise InputError(path, f"CMMM was trained with cmmm.net.formant_share={share}, this run has "
                               f"{net.cfg.formant_share}: give the same setting")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(path, f"CMMM weights do not match ({str(exc).splitlines()[0]})") from None


def stage1_config(fit_cfg, root: Path) -> CMMMFitConfig:
    """The stage-1 config of an identity's fit: its CMMM section on its own features."""
    cfg = CMMMFitConfig()
    cfg.data.roots = [str(root)]
    cfg.data.batch_size = fit_cfg.cmmm.pretrain_batch_size
    cfg.data.window = fit_cfg.data.window
    cfg.audio = fit_cfg.model.audio
    cfg.cmmm = fit_cfg.cmmm
    cfg.explicit_aus = fit_cfg.hmmm.explicit_aus
    cfg.trainer.max_steps = fit_cfg.cmmm.pretrain_steps
    cfg.trainer.val_every = fit_cfg.cmmm.pretrain_steps
    cfg.trainer.accelerator = fit_cfg.trainer.accelerator
    cfg.seed = fit_cfg.seed
    return cfg


def prepare_cmmm(module, root: Path, run_dir: Path, rank: int = 0, should_stop=None) -> None:
    """CMMM of a new fit: cmmm.ckpt when given, else stage 1 on this identity (from the CMMM cache under
    run.dir, trained by rank zero once for every run that asks for the same one; see cmmm_cache); then the
    identity's own audio statistics for the speaker normalisation, and the calibration. `should_stop()`:
    True once the requeue signal came (stage 1 and the wait for it end with `preemption.Preempted`)."""
    from hm_talker.data.identity import load_features
    from hm_talker.data.windows import band_stats

    cfg = module.cfg
    ckpt = Path(cfg.cmmm.ckpt) if cfg.cmmm.ckpt else None
    if ckpt is None and cfg.cmmm.pretrain_steps > 0:
        ckpt = stage1_checkpoint(cfg, root, run_dir, rank, should_stop)
    if ckpt is not None:
        load_cmmm_weights(module.cmmm, ckpt, cfg.model.audio)
    if cfg.cmmm.speaker_norm:
        module.cmmm.set_audio_stats(*band_stats(load_features(root)["audio"]))
    calibrate_cmmm(module.cmmm, root, module.cfg)


def stage1_checkpoint(cfg, root: Path, run_dir: Path, rank: int = 0, should_stop=None) -> Path:
    """The stage-1 CMMM of a fit's identity and settings: from the cache (cmmm.cache), else RUN_DIR/cmmm/."""
    stage1 = stage1_config(cfg, root)

    def train(c, path: Path) -> dict:
        log.info("CMMM stage 1 on %s: %d steps", root, cfg.cmmm.pretrain_steps)
        _, metrics = train_cmmm(c, path, quiet=True, progress_every=cfg.trainer.progress_every, should_stop=should_stop)
        log.info("CMMM stage 1: %s", ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        return metrics

    if cfg.cmmm.cache:
        from hm_talker.training.cmmm_cache import cached_stage1

        return cached_stage1(stage1, Path(run_dir).parent, rank, cfg.cmmm.wait_timeout_s, train, should_stop)
    ckpt = Path(run_dir) / "cmmm" / "last.ckpt"  # this run only (a restarted fit does not train it again)
    if not ckpt.is_file():
        if rank != 0:
            raise InputError(None, "cmmm.cache=false trains stage 1 on every rank: set cmmm.cache=true under DDP")
        train(stage1, ckpt)
    return ckpt


def calibrate_cmmm(net, root: Path, cfg) -> None:
    """Statistics of CMMM's raw predictions and of the measured AUs over the identity's training frames
    (its windows cut as everywhere else: hm_talker.driving.speech.identity_windows)."""
    import torch

    from hm_talker.data.identity import load_manifest
    from hm_talker.driving.speech import identity_windows

    manifest = load_manifest(root)
    windows = identity_windows(root, manifest, cfg)
    n = int(manifest["splits"]["train"])
    was_training = net.training
    net.eval()
    pred = []
    with torch.no_grad():
        for k0 in range(0, n, CALIBRATION_BATCH):  # every training frame once, in order
            b = windows.speech_batch(range(k0, min(n, k0 + CALIBRATION_BATCH)))
            pred.append(net(b["audio_window"], b.get("speech_window"))["raw_aus"])
    net.train(was_training)
    net.set_calibration(torch.cat(pred), torch.from_numpy(windows.aus[:n].astype("float32")))


def stage1_group(fit_cfg) -> str:
    """What a fit config's stage 1 is, without reading the data (for a sweep plan): "given" (cmmm.ckpt),
    "none" (no stage 1), or a short hash of the stage-1 settings and identity paths; runs with the same one
    share one cache entry (the identity's bytes complete the real key when the run starts)."""
    from hm_talker.training.cmmm_cache import settings_hash, stage1_settings

    if fit_cfg.cmmm.ckpt:
        return "given"
    if int(fit_cfg.cmmm.pretrain_steps) <= 0:
        return "none"
    cfg = OmegaConf.to_object(fit_cfg) if not hasattr(fit_cfg, "__dataclass_fields__") else fit_cfg
    stage1 = stage1_config(cfg, Path(str(cfg.data.root)))
    return settings_hash({"roots": list(stage1.data.roots), **stage1_settings(stage1)}, 8)
