"""Runs of a W&B project on the server as RunRecords (online only)."""
from __future__ import annotations

import os
from typing import Any

from hm_talker.compare.records import UNGROUPED, RunRecord, protocol_from_tags
from hm_talker.compare.table import finite_number

def _flatten(d: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and set(v) <= {"value", "desc"} and "value" in v:
            v = v["value"]  # the server's {"value": ..., "desc": ...} wrapping
        if isinstance(v, dict):
            flat.update(_flatten(v, key))
        else:
            flat[key] = v
    return flat


def load_wandb_runs(project: str, group: str | None = None, entity: str | None = None,
                    metric_prefix: str | None = None, api: Any = None) -> list[RunRecord]:
    """Runs of a W&B project (optionally one group) as :class:`RunRecord` s. Online only.

    ``metrics`` are the run summary's finite numbers, without W&B's ``_``-prefixed internals;
    with ``metric_prefix`` (e.g. ``"eval/"``) only keys with that prefix, prefix removed.
    ``seed`` comes from the config key ``seed``. ``api`` (a ``wandb.Api``) is for tests.
    """
    if api is None:
        mode = os.environ.get("WANDB_MODE", "").lower()
        if mode in ("offline", "disabled", "dryrun"):
            raise RuntimeError(
                f"load_wandb_runs needs the W&B server, but WANDB_MODE={mode}. Offline runs are "
                "on disk: compare their run directories with compare_runs() instead.")
        import wandb

        try:
            api = wandb.Api(timeout=30)
        except Exception as exc:
            raise RuntimeError(f"cannot use the W&B API (not logged in or offline?): {exc}") from exc
    path = f"{entity}/{project}" if entity else project
    try:
        runs = list(api.runs(path, filters={"group": group} if group else None))
    except Exception as exc:
        raise RuntimeError(f"cannot list W&B runs of {path!r} (offline or no access?): {exc}") from exc
    records = []
    for run in runs:
        config = _flatten(dict(getattr(run, "config", {}) or {}))
        summary = getattr(run, "summary_metrics", None)
        if summary is None:
            summary = dict(getattr(run, "summary", {}) or {})
        metrics = {}
        for k, v in _flatten(dict(summary)).items():
            if k.startswith("_"):
                continue
            if metric_prefix is not None:
                if not k.startswith(metric_prefix):
                    continue
                k = k[len(metric_prefix):]
            val = finite_number(v)
            if val is not None or v is None:
                metrics[k] = val
        tags = list(getattr(run, "tags", []) or [])
        records.append(RunRecord(
            name=str(getattr(run, "name", None) or getattr(run, "id", "run")),
            group=str(getattr(run, "group", None) or UNGROUPED),
            protocol=protocol_from_tags(tags),
            seed=config.get("seed"),
            tags=tags,
            config=config, metrics=metrics,
            source=f"wandb:{path}/{getattr(run, 'id', '')}",
        ))
    return records
