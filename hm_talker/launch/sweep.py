"""Sweeps in W&B's sweep YAML: expand a spec into runs (name + `fit` overrides) and a plan file.

A spec has `name`, `method` (grid | random | bayes), `parameters` (fit config keys, each
`{values: [...]}`, `{value: x}` or a W&B distribution) and optionally `metric` and `run_cap`.
`seed` is special: every configuration runs every listed seed, whatever the method, so that a
configuration's spread over seeds can be measured. grid is the product of the `values` lists in
file order; random and bayes draw configurations with W&B's own search (the `sweeps` package,
offline), bayes from the finished runs found under run.dir.

Every run is grouped under the sweep's name (`run.group`) and named
`<sweep>-<8 hex of its configuration>-seed<seed>`: unique per configuration and seed, and the
same on every expansion, so a resubmitted sweep finds its runs again.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hm_talker.errors import InputError

METHODS = ("grid", "random", "bayes")


@dataclass
class SweepRunSpec:
    name: str  # run.name = W&B run id
    overrides: list[str]  # `hm-talker fit` key=value overrides, in order
    params: dict = field(default_factory=dict)  # the searched values of this run


def load_spec(path: str | Path) -> dict:
    """The sweep YAML as a dict (safe YAML; no code), checked for the fields this module reads."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "sweep spec not found")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(path, f"bad YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("parameters"), dict) or not spec["parameters"]:
        raise InputError(path, "a sweep spec needs a non-empty `parameters` mapping")
    if spec.get("method") not in METHODS:
        raise InputError(path, f"method must be one of {', '.join(METHODS)}, not {spec.get('method')!r}")
    spec.setdefault("name", path.stem)
    for key, p in spec["parameters"].items():
        if not isinstance(p, dict) or not ({"values", "value", "distribution", "min"} & p.keys()):
            raise InputError(path, f"parameter {key}: give values: [...], value: x or a distribution")
        if "values" in p and (not isinstance(p["values"], list) or not p["values"]):
            raise InputError(path, f"parameter {key}: values must be a non-empty list")
        if spec["method"] == "grid" and "values" not in p and "value" not in p:
            raise InputError(path, f"parameter {key}: a grid needs values or value")
    return spec


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


def _seeds(spec: dict, extra: list[str]) -> list:
    p = spec["parameters"].get("seed")
    if p is None:
        given = [o.split("=", 1)[1] for o in extra if o.startswith("seed=")]
        return [int(given[-1]) if given else 0]
    return list(p["values"]) if "values" in p else [p["value"]]


def _grid(params: dict) -> list[dict]:
    keys = list(params)
    axes = [params[k]["values"] if "values" in params[k] else [params[k]["value"]] for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*axes)]


def _search(spec: dict, params: dict, count: int, history: list) -> list[dict]:
    """`count` configurations from W&B's random / Bayesian search (offline)."""
    import warnings

    import numpy as np

    with warnings.catch_warnings():  # the package's pydantic-v1 style config warns on import
        warnings.simplefilter("ignore")
        import sweeps

    import copy

    config = {"method": spec["method"], "parameters": copy.deepcopy(params)}  # the package edits it
    if "metric" in spec:
        config["metric"] = spec["metric"]
    if spec["method"] == "bayes" and "metric" not in spec:
        raise InputError(None, f"sweep {spec['name']}: bayes needs a metric: {{name: ..., goal: ...}}")
    # reproducible draws: the same spec gives the same runs on every expansion (resubmission)
    seed = int(hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:8], 16)
    import random

    import sweeps.params

    # the package samples with the `random` module (other code draws from it too, a varying number of
    # times): give its sampler a generator of its own, and numpy (bayes) a fixed seed
    state, module_random = np.random.get_state(), sweeps.params.random
    np.random.seed(seed)
    sweeps.params.random = random.Random(seed)
    try:
        drawn = sweeps.next_runs(config, list(history), validate=False, n=count)
    finally:
        np.random.set_state(state)
        sweeps.params.random = module_random
    return [{k: v["value"] for k, v in r.config.items()} for r in drawn if r is not None]


def config_id(params: dict) -> str:
    """8 hex digits naming one configuration (its searched values, without the seed)."""
    text = json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _run_dir_root(extra: list[str]) -> Path:
    dirs = [o.split("=", 1)[1] for o in extra if o.startswith("run.dir=")]
    return Path(dirs[-1] if dirs else "runs")


def finished_history(spec: dict, extra: list[str]) -> list:
    """The sweep's finished runs (summary.json under run.dir) as `sweeps.SweepRun`s, for bayes."""
    import sweeps

    metric = spec.get("metric", {}).get("name")
    out = []
    for summary in sorted(_run_dir_root(extra).glob(f"{spec['name']}-*/summary.json")):
        s = json.loads(summary.read_text())
        if s.get("group") != spec["name"]:
            continue
        config = {k: {"value": s["config"][k]} for k in spec["parameters"] if k in s["config"] and k != "seed"}
        out.append(sweeps.SweepRun(name=s["name"], state=sweeps.RunState.finished, config=config,
                                   summary_metrics={metric: s["metrics"].get(metric)} if metric else {}))
    return out


def expand(spec: dict, extra: list[str], count: int | None = None) -> list[SweepRunSpec]:
    """The sweep's runs: configurations x seeds, each with its fit overrides (the spec's constants,
    then `extra`, then the searched values, seed, run name and group: the spec's axes win)."""
    # constants (`value:`) first, then the command line's overrides, then the searched values
    fixed = [f"{k}={_fmt(v['value'])}" for k, v in spec["parameters"].items()
             if k != "seed" and set(v) == {"value"}]
    params = {k: v for k, v in spec["parameters"].items() if k != "seed" and set(v) != {"value"}}
    if not params:
        configs = [{}]
    elif spec["method"] == "grid":
        configs = _grid(params)
    else:
        n = count or spec.get("run_cap")
        if not n:
            raise InputError(None, f"sweep {spec['name']}: method {spec['method']} needs --count N or run_cap")
        history = finished_history(spec, extra) if spec["method"] == "bayes" else []
        configs = _search(spec, params, int(n), history)
    runs = []
    for cfg in configs:
        cid = config_id(cfg)
        for seed in _seeds(spec, extra):
            name = f"{spec['name']}-{cid}-seed{seed}"
            overrides = [*fixed, *extra, *(f"{k}={_fmt(v)}" for k, v in cfg.items()), f"seed={seed}",
                         f"run.name={name}", f"run.group={spec['name']}"]
            runs.append(SweepRunSpec(name, overrides, {**cfg, "seed": seed}))
    return runs


def write_plan(spec: dict, runs: list[SweepRunSpec], extra: list[str], config: str | None) -> Path:
    """RUN_DIR_ROOT/sweeps/<name>.json: what each array task runs (written atomically)."""
    path = _run_dir_root(extra) / "sweeps" / f"{spec['name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"name": spec["name"], "config": config, "metric": spec.get("metric"), "runs": [asdict(r) for r in runs]},
                              indent=2))
    os.replace(tmp, path)
    return path.resolve()


def run_state(run_dir: Path) -> str:
    """finished (summary.json), partial (a checkpoint) or new."""
    if (run_dir / "summary.json").is_file():
        return "finished"
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return "partial"
    return "new"
