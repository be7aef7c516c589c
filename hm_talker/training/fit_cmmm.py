"""`hm-talker fit-cmmm [CONFIG] [key=value ...]`: CMMM alone (stage 1) on one or several identities.

RUN_DIR = run.dir/run.name gets checkpoints/last.ckpt (state_dict keys `net.*`, config as a plain
dict) and summary.json with the validation metrics (AU MAE lower / upper, mouth-AU r, sync accuracy).
An identity's fit loads it with `cmmm.ckpt=RUN_DIR/checkpoints/last.ckpt`.
"""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from hm_talker.errors import InputError


def fit_cmmm(config_path: str | None, overrides: list[str]) -> Path:
    """`hm-talker fit-cmmm`: returns RUN_DIR."""
    from hm_talker.config.cmmm import load_config
    from hm_talker.config.loading import flat_dict
    from hm_talker.data.identity import load_manifest, speech_rows
    from hm_talker.tracking import lightning_logger, run_settings
    from hm_talker.training.stage1 import train_cmmm

    cfg = load_config(config_path, overrides)
    manifests = [load_manifest(Path(r)) for r in cfg.data.roots]
    shapes = {(*m["features"]["audio"]["shape"], speech_rows(m)) for m in manifests}
    if len(shapes) != 1:
        raise InputError(None, f"identities have different audio features {sorted(shapes)}: preprocess them alike")
    k, d, ks = shapes.pop()
    cfg.audio.rows_per_frame, cfg.audio.feature_dim, cfg.cmmm.net.speech_rows = int(k), int(d), int(ks)
    name = cfg.run.name or f"cmmm-{Path(cfg.data.roots[0]).name}-seed{cfg.seed}"
    run_dir = Path(cfg.run.dir) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = lightning_logger(run_settings(name, cfg.run.project, run_dir, cfg.run.wandb_mode, cfg.run.group,
                                           config=flat_dict(cfg), job_type="cmmm"))
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
