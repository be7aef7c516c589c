"""Runs to compare, read from their `summary.json` (written by `fit`, `fit-cmmm` and `evaluate`)::

    {"name": str, "group": str (the ablation), "protocol": str (evaluations: self, cross-video,
     cross-audio), "seed": int, "tags": [str], "config": {flat key: value},
     "metrics": {name: float or null}}
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from hm_talker.errors import InputError

SUMMARY_FILE = "summary.json"
UNGROUPED = "ungrouped"


@dataclass
class RunRecord:
    """One run, as read from ``summary.json`` or W&B."""

    name: str
    group: str
    seed: Any = None
    protocol: str = ""  # evaluation protocol (self, cross-video, cross-audio, pair); "" for fit runs
    tags: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    source: str = ""


def protocol_from_tags(tags: Iterable[str]) -> str:
    """The evaluation protocol an ``eval-<protocol>`` tag names ("" when none)."""
    for t in tags:
        if isinstance(t, str) and t.startswith("eval-"):
            return t[len("eval-"):]
    return ""


def load_summary(run_dir: str | os.PathLike) -> RunRecord:
    """Read ``<run_dir>/summary.json`` into a :class:`RunRecord`."""
    path = Path(run_dir)
    path = path if path.name == SUMMARY_FILE else path / SUMMARY_FILE
    from hm_talker.safe_read import read_json

    if not path.is_file():
        raise InputError(path, "no summary.json: not a run directory")
    data = read_json(path, "summary.json")  # binary / malformed -> one line naming the file
    if not isinstance(data, dict) or not isinstance(data.get("metrics", {}), dict):
        raise InputError(path, "expected an object with a 'metrics' object")
    if not isinstance(data.get("tags") or [], list) or not isinstance(data.get("config") or {}, dict):
        raise InputError(path, "'tags' must be a list and 'config' an object")
    tags = list(data.get("tags") or [])
    return RunRecord(
        name=str(data.get("name") or path.parent.name),
        group=str(data.get("group") or UNGROUPED),
        protocol=str(data.get("protocol") or protocol_from_tags(tags)),
        seed=data.get("seed"),
        tags=list(data.get("tags") or []),
        config=dict(data.get("config") or {}),
        metrics=dict(data.get("metrics") or {}),
        source=str(path.parent),
    )


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Run directories in ``paths``: each a run dir, a ``summary.json``, or a folder searched
    recursively for them (sorted, so the order is reproducible)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.name == SUMMARY_FILE:
            found.append(p.parent)
        elif (p / SUMMARY_FILE).is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(s.parent for s in p.rglob(SUMMARY_FILE)))
        else:
            raise InputError(p, "no such run directory")
    unique = list(dict.fromkeys(d.resolve() for d in found))
    return unique
