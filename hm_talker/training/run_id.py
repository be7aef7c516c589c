"""Default run names: one per identity, experiment and effective configuration.

``run.name`` is the W&B run id and the run directory's name. When it is empty the name is
``<identity>-<experiment>-seed<seed>-<hash>``: the experiment file's stem and 8 hex digits of a
SHA-256 over the effective config, leaving out what does not change what is trained (the run's
bookkeeping, where the data lives, how long / on how many devices it runs, how often it logs).
So two ablations of one identity and seed get two runs, and ``--resume`` with a longer
``trainer.max_steps`` finds the same run directory.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# dotted keys (or sections) left out of the hash
NOT_HASHED = ("run", "data.root", "data.num_workers", "data.val_batch_size", "trainer.max_steps",
              "trainer.devices", "trainer.num_nodes", "trainer.accelerator", "trainer.log_every",
              "trainer.val_every", "trainer.checkpoint_every", "trainer.limit_val_batches",
              "trainer.progress_every")


def config_hash(cfg: DictConfig, length: int = 8) -> str:
    """Short hex SHA-256 of the resolved config without the NOT_HASHED keys."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_HASHED:
        *parents, last = key.split(".")
        node = tree
        for p in parents:
            node = node.get(p, {})
        node.pop(last, None)
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_name(cfg: DictConfig, config_path: str | Path | None) -> str:
    """run.name when set, else `<identity>-<experiment>-seed<seed>-<config hash>`."""
    if cfg.run.name:
        return cfg.run.name
    experiment = Path(config_path).stem if config_path else "default"
    return f"{Path(cfg.data.root).name}-{experiment}-seed{cfg.seed}-{config_hash(cfg)}"
