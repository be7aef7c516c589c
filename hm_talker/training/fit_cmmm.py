"""`hm-talker fit-cmmm [CONFIG] [key=value ...]`: CMMM alone (stage 1) on one or several identities,
and the same stage run inside an identity's `fit` when no CMMM checkpoint is given.

RUN_DIR = run.dir/run.name gets checkpoints/last.ckpt (state_dict keys `net.*`, config as a plain
dict) and summary.json with the validation metrics (AU MAE lower / upper, mouth-AU r, sync accuracy).
An identity's fit loads it with `cmmm.ckpt=RUN_DIR/checkpoints/last.ckpt`.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from omegaconf import OmegaConf

from hm_talker.config_utils import merge_overrides
from hm_talker.errors import InputError
from hm_talker.training.cmmm_config import CMMMFitConfig

log = logging.getLogger("hm_talker")


def build_net(cfg: CMMMFitConfig):
    from hm_talker.model.au_predictor import AUPredictor

    cfg.cmmm.net.explicit_dim = cfg.audio.condition_dim  # the explicit feature fuses with the implicit one
    return AUPredictor(cfg.audio, cfg.cmmm.net, cfg.explicit_aus)


def train_cmmm(cfg: CMMMFitConfig, ckpt_path: Path, logger=False, config_dict: dict | None = None,
               quiet: bool = False):
    """Train the CMMM of `cfg` on cfg.data.roots and save `ckpt_path`; returns (module, val metrics).

    quiet: inside an identity's fit, Lightning's start-up lines of this inner Trainer are not repeated."""
    if quiet:
        lightning_log = logging.getLogger("lightning.pytorch")
        level = lightning_log.level
        lightning_log.setLevel(logging.WARNING)
        try:
            return train_cmmm(cfg, ckpt_path, logger, config_dict)
        finally:
            lightning_log.setLevel(level)
    import lightning as L
    import numpy as np
    import torch

    from datamodules import FeatureWindowDataModule
    from hm_talker.training.cmmm_module import CMMMModule

    for root in cfg.data.roots:
        if not (Path(root) / "features.npz").is_file():
            raise InputError(root, "not a preprocessed identity (no features.npz)")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    net = build_net(cfg)
    module = CMMMModule(net, cfg.cmmm.loss, cfg.cmmm.lr, cfg.cmmm.weight_decay,
                        config_dict=config_dict or OmegaConf.to_container(OmegaConf.structured(cfg)))
    dm = FeatureWindowDataModule(list(cfg.data.roots), batch_size=cfg.data.batch_size, window=cfg.data.window,
                                 shifts=list(cfg.cmmm.loss.shifts), normalise=cfg.cmmm.speaker_norm, seed=cfg.seed,
                                 num_workers=cfg.data.num_workers, speech_window=cfg.cmmm.net.speech_window)
    t = cfg.trainer
    dm.setup()
    train_aus = np.concatenate([d.aus[:d.num_train] for d in dm.idents])
    net.init_au_bias(torch.from_numpy(train_aus.mean(0)))  # start from the mean predictor
    trainer = L.Trainer(max_steps=t.max_steps, accelerator=t.accelerator, devices=1, logger=logger,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        val_check_interval=None if t.val_every <= 0 else min(t.val_every, t.max_steps),
                        check_val_every_n_epoch=None, num_sanity_val_steps=0, log_every_n_steps=max(1, t.log_every),
                        default_root_dir=str(ckpt_path.parent))
    trainer.fit(module, datamodule=dm)
    trainer.validate(module, datamodule=dm, verbose=False)
    metrics = module.val_metrics()
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_path.with_name(f".{ckpt_path.name}.tmp-{os.getpid()}")
    trainer.save_checkpoint(tmp, weights_only=True)
    os.replace(tmp, ckpt_path)
    return module, metrics


def load_cmmm_weights(net, path, audio_cfg) -> None:
    """Load a CMMM checkpoint's `net.*` weights into `net`; an InputError when it does not fit."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such CMMM checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(path, f"corrupt or unsafe checkpoint ({type(exc).__name__})") from None
    state = {k[4:]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("net.")}
    if not state:
        raise InputError(path, "not a CMMM checkpoint (no net.* weights)")
    trained = (ckpt.get("config") or {}).get("audio", {})
    for key in ("feature_dim", "rows_per_frame", "window", "condition_dim"):
        if key in trained and trained[key] != getattr(audio_cfg, key):
            raise InputError(path, f"CMMM was trained with audio.{key}={trained[key]}, this fit has "
                                   f"{getattr(audio_cfg, key)}")
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


def fit_cmmm(config_path: str | None, overrides: list[str]) -> Path:
    """`hm-talker fit-cmmm`: returns RUN_DIR."""
    from lightning.pytorch.loggers import WandbLogger

    from hm_talker.training.fit import flat_dict, wandb_mode

    cfg = OmegaConf.structured(CMMMFitConfig)
    OmegaConf.set_struct(cfg, True)
    if config_path:
        if not Path(config_path).is_file():
            raise InputError(config_path, "config file not found")
        cfg = OmegaConf.merge(cfg, OmegaConf.load(config_path))
    cfg = merge_overrides(cfg, list(overrides))
    if not cfg.data.roots:
        raise InputError(config_path, "data.roots is empty (pass data.roots=[IDENTITY_DIR,...])")
    from datamodules.talking_head import load_manifest

    shapes = {tuple(load_manifest(Path(r))["features"]["audio"]["shape"]) for r in cfg.data.roots}
    if len(shapes) != 1:
        raise InputError(None, f"identities have different audio features {sorted(shapes)}: preprocess them alike")
    k, d = shapes.pop()
    cfg.audio.rows_per_frame, cfg.audio.feature_dim = int(k), int(d)
    name = cfg.run.name or f"cmmm-{Path(cfg.data.roots[0]).name}-seed{cfg.seed}"
    run_dir = Path(cfg.run.dir) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    logger = WandbLogger(name=name, id=name, project=cfg.run.project, group=cfg.run.group or None,
                         save_dir=str(run_dir), mode=wandb_mode(cfg.run.wandb_mode), resume="allow",
                         config=flat_dict(cfg), job_type="cmmm")
    container = OmegaConf.to_container(cfg, resolve=True)
    _, metrics = train_cmmm(OmegaConf.to_object(cfg), run_dir / "checkpoints" / "last.ckpt", logger, container)
    summary = {"name": name, "group": cfg.run.group, "seed": cfg.seed, "kind": "cmmm", "config": flat_dict(cfg),
               "metrics": metrics}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    logger.experiment.finish()
    return run_dir


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("fit-cmmm", help="train CMMM (audio -> AUs, stage 1) on one or several identities")
    p.add_argument("config", nargs="?", default=None, help="override file on top of CMMMFitConfig")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="e.g. data.roots=[identA,identB] trainer.max_steps=3000")
    p.set_defaults(func=_entry)


def _entry(args) -> int:
    if args.config is not None and "=" in args.config:
        args.overrides, args.config = [args.config, *args.overrides], None
    run_dir = fit_cmmm(args.config, args.overrides)
    m = json.loads((run_dir / "summary.json").read_text())["metrics"]
    print(f"{run_dir}: " + ", ".join(f"{k}={v:.3f}" for k, v in m.items()))
    return 0
