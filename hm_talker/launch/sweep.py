"""Sweeps in W&B's sweep YAML: expand a spec into runs (name + `fit` overrides) and a plan file.

A spec has `name`, `method` (grid | random | bayes), `parameters` (fit config keys, each
`{values: [...]}`, `{value: x}` or a W&B distribution) and optionally `metric` and `run_cap`.
`seed` is special: every configuration runs every listed seed, whatever the method, so that a
configuration's spread over seeds can be measured. grid is the product of the `values` lists in
file order; random and bayes draw configurations with W&B's own search (the `sweeps` package,
offline), bayes from the finished runs found under run.dir.

Every run is grouped under the sweep's name (`run.group`) and named
`<sweep>-<8 hex of its configuration>-seed<seed>`: unique per configuration and seed, and the
same on every expansion, so a resubmitted sweep finds its runs again. With `label: sfp` the name also
says what SFP trains: `<sweep>-<alt-m0.25-p4 | rand-m0.5 | ...>-<8 hex>-seed<seed>`.

A parameter's `values` may be mappings (one complete setting of a config section per entry, e.g. one
SFP arm: `{schedule: alternate, p_measured: 0.25, period: 4}` under the key `sfp`): each entry becomes
dotted overrides (`sfp.schedule=alternate ...`), so an axis can pair fields that belong together.

A sweep is a plan checked as a whole (`SweepPlan`): its size is counted from the axes before anything
is expanded (more than `max_runs` is refused), and every run's effective config goes through `fit`'s
own loader and validator, its name through `check_name`, and no two runs may train the same thing
(same values and the same SFP sequence: `hm_talker.config.sfp.effective_key`). The runs come out one
by one (an iterator), so a dry run prints each as soon as it is checked.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from hm_talker.errors import InputError
from hm_talker.safe_output import write_text_atomic

METHODS = ("grid", "random", "bayes")
LABELS = ("sfp",)  # `label:` a spec may ask for: the part of each run name that says what it trains
DEFAULT_MAX_RUNS = 1000  # --max-runs: a larger plan is refused (counted from the axes, before expansion)
# a dry run without data.root=... checks every run with this in its place (a launch needs the real one)
PLACEHOLDER_ROOT = "DATA_ROOT"
_ABSENT = object()  # OmegaConf.select's answer for a key that is no config field


@dataclass
class SweepRunSpec:
    name: str  # run.name = W&B run id
    overrides: list[str]  # `hm-talker fit` key=value overrides, in order
    params: dict = field(default_factory=dict)  # the searched values of this run (mappings flattened)
    sfp: str = ""  # what SFP trains in this run, e.g. "measured=0.50 (alternate: 1 of 2 steps)"
    stage1: str = ""  # its stage-1 CMMM (training/cmmm_cache.stage1_group): runs with the same one share it


def load_spec(path: str | Path) -> dict:
    """The sweep YAML as a dict (safe YAML; no code), checked for the fields this module reads."""
    import yaml

    from hm_talker.validate import check_name

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
    # the name becomes run names, the W&B group and the plan file RUN_DIR_ROOT/sweeps/<name>.json
    check_name("name", spec["name"] if isinstance(spec["name"], str) else repr(spec["name"]), path)
    if spec.get("label") is not None and spec["label"] not in LABELS:
        raise InputError(path, f"label must be one of {', '.join(LABELS)}, not {spec['label']!r}")
    for key, p in spec["parameters"].items():
        if not isinstance(p, dict) or not ({"values", "value", "distribution", "min"} & p.keys()):
            raise InputError(path, f"parameter {key}: give values: [...], value: x or a distribution")
        if "values" in p and (not isinstance(p["values"], list) or not p["values"]):
            raise InputError(path, f"parameter {key}: values must be a non-empty list")
        if spec["method"] == "grid" and "values" not in p and "value" not in p:
            raise InputError(path, f"parameter {key}: a grid needs values or value")
        if key == "seed" and "values" not in p and "value" not in p:
            raise InputError(path, "parameter seed: give values: [...] or value: x "
                                   "(every configuration runs every seed)")
        mappings = any(isinstance(v, dict) for v in p.get("values", [p.get("value")]))
        if mappings and (key == "seed" or spec["method"] == "bayes"):
            raise InputError(path, f"parameter {key}: mapping values are for config sections in grid / random "
                                   "sweeps (bayes cannot learn over them)")
    return spec


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


def _flatten(params: dict) -> dict:
    """{'sfp': {'schedule': 'random'}, 'seed': 0} -> {'sfp.schedule': 'random', 'seed': 0} (mapping values
    are settings of a config section: one override per field)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in _flatten(v).items()})
        else:
            out[k] = v
    return out


def _seeds(spec: dict, extra: list[str]) -> list:
    p = spec["parameters"].get("seed")
    if p is None:
        given = [o.split("=", 1)[1] for o in extra if o.startswith("seed=")]
        return [int(given[-1]) if given else 0]
    return list(p["values"]) if "values" in p else [p["value"]]


def _searched(spec: dict) -> dict:
    """The parameters that vary between configurations (not the constants, not the seed)."""
    return {k: v for k, v in spec["parameters"].items() if k != "seed" and set(v) != {"value"}}


def count_runs(spec: dict, extra: list[str], count: int | None = None) -> tuple[int, str]:
    """(number of runs, how: '100 x 100 configurations x 3 seeds') from the axes alone: nothing is expanded."""
    params, seeds = _searched(spec), len(_seeds(spec, extra))
    if not params:
        sizes = [1]
    elif spec["method"] == "grid":
        sizes = [len(p["values"]) if "values" in p else 1 for p in params.values()]
    else:
        n = count or spec.get("run_cap")
        if not n:
            raise InputError(None, f"sweep {spec['name']}: method {spec['method']} needs --count N or run_cap")
        sizes = [int(n)]
    configs = math.prod(sizes)
    plural = lambda n, word: f"{word}{'s' if n != 1 else ''}"  # noqa: E731
    how = f"{' x '.join(map(str, sizes))} {plural(configs, 'configuration')} x {seeds} {plural(seeds, 'seed')}"
    return configs * seeds, how


def _grid(params: dict) -> Iterator[dict]:
    """The product of the axes, in file order, one configuration at a time (never held as a list)."""
    keys = list(params)
    axes = [params[k]["values"] if "values" in params[k] else [params[k]["value"]] for k in keys]
    return (dict(zip(keys, combo)) for combo in itertools.product(*axes))


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


def run_dir_root(extra: list[str]) -> Path:
    dirs = [o.split("=", 1)[1] for o in extra if o.startswith("run.dir=")]
    return Path(dirs[-1] if dirs else "runs")


def finished_history(spec: dict, extra: list[str]) -> list:
    """The sweep's finished runs (summary.json under run.dir) as `sweeps.SweepRun`s, for bayes."""
    import sweeps

    metric = spec.get("metric", {}).get("name")
    out = []
    for summary in sorted(run_dir_root(extra).glob(f"{spec['name']}-*/summary.json")):
        s = json.loads(summary.read_text())
        if s.get("group") != spec["name"]:
            continue
        config = {k: {"value": s["config"][k]} for k in spec["parameters"] if k in s["config"] and k != "seed"}
        out.append(sweeps.SweepRun(name=s["name"], state=sweeps.RunState.finished, config=config,
                                   summary_metrics={metric: s["metrics"].get(metric)} if metric else {}))
    return out


def iter_runs(spec: dict, extra: list[str], count: int | None = None) -> Iterator[SweepRunSpec]:
    """The sweep's runs, unchecked, one at a time: configurations x seeds, each with its fit overrides
    (the spec's constants, then `extra`, then the searched values, seed, run name and group: the spec's
    axes win). `SweepPlan` checks them and gives labelled runs their final names."""
    # constants (`value:`) first, then the command line's overrides, then the searched values
    fixed = [f"{k}={_fmt(v)}" for k, v in _flatten({k: p["value"] for k, p in spec["parameters"].items()
                                                    if k != "seed" and set(p) == {"value"}}).items()]
    params = _searched(spec)
    if not params:
        configs: Iterator[dict] = iter([{}])
    elif spec["method"] == "grid":
        configs = _grid(params)
    else:
        n = count or spec.get("run_cap")
        if not n:
            raise InputError(None, f"sweep {spec['name']}: method {spec['method']} needs --count N or run_cap")
        history = finished_history(spec, extra) if spec["method"] == "bayes" else []
        configs = iter(_search(spec, params, int(n), history))
    seeds = _seeds(spec, extra)
    for cfg in configs:
        cfg = _flatten(cfg)
        cid = config_id(cfg)
        for seed in seeds:
            name = f"{spec['name']}-{cid}-seed{seed}"
            overrides = [*fixed, *extra, *(f"{k}={_fmt(v)}" for k, v in cfg.items()), f"seed={seed}",
                         f"run.name={name}", f"run.group={spec['name']}"]
            yield SweepRunSpec(name, overrides, {**cfg, "seed": seed})


def _searched_keys(spec: dict) -> list[str]:
    """Every dotted key an axis may set (mapping values contribute each of their fields)."""
    keys: dict[str, None] = {}
    for k, p in _searched(spec).items():
        for v in p.get("values", [None]):
            keys.update(dict.fromkeys(_flatten({k: v}) if isinstance(v, dict) else [k]))
    return list(keys)


class SweepPlan:
    """The checked runs of a sweep, one at a time (iterate it; nothing is held but one key per run).

    Counting happens here, before anything is expanded: more than `max_runs` runs is an InputError with
    the count. Each run then gets its effective config from `hm_talker.training.fit.load_config` (the
    experiment file, `base:`, no `${...}`, the overrides, `check_fit_config`): the first run of each set
    of searched keys is loaded in full; each next run with the same keys merges its own overrides into
    that config in place and goes through the same `check_fit_config`. Every run re-sets all of those
    keys (mapping values are flattened, lists replace), so the result is what a fresh load gives, at
    about a tenth of the cost (a fresh load builds and deep-copies the whole structured config: ~50 ms).
    A bad run, a bad name or two runs that train the same thing raise one InputError naming the spec and
    the run(s); an unknown key is named in full, with where it came from (the spec or the command line).
    """

    def __init__(self, spec: dict, extra: list[str], count: int | None = None, config: str | None = None,
                 source: str | Path | None = None, max_runs: int = DEFAULT_MAX_RUNS,
                 placeholder_root: bool = False) -> None:
        self.spec, self.extra, self.count, self.config = spec, list(extra), count, config
        self.source = str(source) if source is not None else None
        self.size, self.shape = count_runs(spec, self.extra, count)
        if self.size > max_runs:
            raise InputError(self.source, f"sweep {spec['name']}: {self.size} runs ({self.shape}) is more than "
                                          f"--max-runs {max_runs}; narrow the axes or raise --max-runs")
        # a dry run may leave data.root out: each run is checked with a placeholder in its place
        given = any(o.startswith("data.root=") for o in self.extra) or "data.root" in spec["parameters"]
        self.placeholder = placeholder_root and not given
        self.check_files = not placeholder_root  # a launch: the files every run reads must exist now
        self._prefix = [f"data.root={PLACEHOLDER_ROOT}"] if self.placeholder else []
        searched = _searched_keys(spec)
        # the values that tell two runs apart besides SFP (run.* names and logs train nothing)
        self._identity_keys = [k for k in searched if not k.startswith(("sfp.", "run.")) and k != "sfp"] + ["seed"]

    def _check_keys(self, run: SweepRunSpec, schema) -> None:
        """Every override key a config field (the loader would say only the key's last part)."""
        from omegaconf import OmegaConf
        from omegaconf.errors import MissingMandatoryValue

        for o in run.overrides:
            key = o.split("=", 1)[0]
            if key in self._known:
                continue
            try:
                found = OmegaConf.select(schema, key, default=_ABSENT, throw_on_missing=True)
            except MissingMandatoryValue:  # a field without a default (data.root): it exists
                found = None
            except Exception:  # noqa: BLE001 (a malformed key: the loader words its own error)
                found = None
            if found is _ABSENT:
                where = "a command-line override" if o in self.extra else "a parameter of the spec"
                raise InputError(None, f"unknown config key {key} ({where})")
            self._known.add(key)

    def _fail(self, run: SweepRunSpec, index: int, problem) -> InputError:
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in run.params.items())
        return InputError(self.source, f"sweep {self.spec['name']}: run {index} ({shown}): {problem}")

    def __iter__(self) -> Iterator[SweepRunSpec]:
        from omegaconf import OmegaConf

        from hm_talker.config.loading import merge_overrides
        from hm_talker.config import sfp
        from hm_talker.config.fit import FitConfig
        from hm_talker.config.fit import load_config
        from hm_talker.training.stage1 import stage1_group
        from hm_talker.config.fit import check_fit_config
        from hm_talker.validate import check_name, refuse_interpolation_overrides

        schema = OmegaConf.structured(FitConfig)  # the fields a key may name
        self._known: set[str] = set()
        bases: dict[tuple, object] = {}  # searched keys -> the effective config of the last run with them
        seen: dict[tuple, str] = {}  # what a run trains -> its name
        names: set[str] = set()
        label = self.spec.get("label")
        for index, run in enumerate(iter_runs(self.spec, self.extra, self.count)):
            # the run's own overrides: its searched values, seed, run.name, run.group (iter_runs' order)
            tail = run.overrides[len(run.overrides) - (len(run.params) + 2):]
            keys = tuple(o.split("=", 1)[0] for o in tail)
            try:
                self._check_keys(run, schema)
                if keys not in bases:
                    cfg = bases[keys] = load_config(self.config, [*self._prefix, *run.overrides])
                else:
                    cfg = bases[keys]
                    refuse_interpolation_overrides(tail)
                    try:  # in place: OmegaConf.merge(cfg, from_dotlist(tail)) is this after a deep copy
                        cfg.merge_with_dotlist(tail)
                    except Exception:
                        merge_overrides(cfg, tail)  # the loader's own one-line error for these overrides
                        raise
                    check_fit_config(cfg, self.config)
                if self.check_files:
                    _check_references(cfg)
                note = sfp.describe(cfg.sfp, int(cfg.trainer.max_steps))
                if label == "sfp":  # the name says what the run trains
                    cid = config_id({k: v for k, v in run.params.items() if k != "seed"})
                    name = f"{self.spec['name']}-{sfp.label(cfg.sfp)}-{cid}-seed{run.params['seed']}"
                    check_name("run.name", name)
                    # iter_runs ends every run with run.name=..., run.group=...
                    run = SweepRunSpec(name, [*run.overrides[:-2], f"run.name={name}", run.overrides[-1]], run.params)
            except InputError as exc:
                raise self._fail(run, index, exc) from None
            run.sfp = note
            run.stage1 = stage1_group(cfg)
            if run.name in names:
                raise self._fail(run, index, f"two runs are named {run.name}")
            names.add(run.name)
            values = tuple(json.dumps(_plain(OmegaConf.select(cfg, k)), sort_keys=True, default=str)
                           for k in self._identity_keys)
            key = (sfp.effective_key(cfg.sfp, int(cfg.seed)), values)
            if key in seen:
                raise InputError(self.source, f"sweep {self.spec['name']}: runs {seen[key]} and {run.name} train the "
                                              f"same thing ({note}, the same other values): a field their "
                                              f"schedule does not read is all that differs; drop one")
            seen[key] = run.name
            yield run


def _check_references(cfg) -> None:
    """eval.drive_video files exist (a run would refuse a missing one only after queueing)."""
    from hm_talker.evaluation.validation import drive_videos

    for path in drive_videos(_plain(cfg.eval.drive_video)):
        if not Path(path).is_file():
            raise InputError(None, f"eval.drive_video {path}: no such file (pass eval.drive_video=REF.mp4, a real "
                                   "video of another person speaking)")


def _plain(value):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def expand(spec: dict, extra: list[str], count: int | None = None, config: str | None = None,
           max_runs: int = DEFAULT_MAX_RUNS) -> list[SweepRunSpec]:
    """Every checked run of the sweep as a list (a missing data.root is a placeholder): for small sweeps
    and tests. The CLI iterates a `SweepPlan` instead."""
    return list(SweepPlan(spec, extra, count, config, max_runs=max_runs, placeholder_root=True))


def write_plan(spec: dict, runs: list[SweepRunSpec], extra: list[str], config: str | None) -> Path:
    """RUN_DIR_ROOT/sweeps/<name>.json: what each array task runs (written atomically)."""
    path = run_dir_root(extra) / "sweeps" / f"{spec['name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"name": spec["name"], "config": config, "metric": spec.get("metric"),
                                        "runs": [asdict(r) for r in runs]}, indent=2))
    return path.resolve()


def run_state(run_dir: Path) -> str:
    """finished (summary.json), partial (a checkpoint) or new."""
    if (run_dir / "summary.json").is_file():
        return "finished"
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return "partial"
    return "new"
