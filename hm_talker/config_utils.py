"""OmegaConf helpers: `key=value` overrides onto a structured config; unknown keys are an error."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from hm_talker.errors import InputError


def merge_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """Apply dotlist overrides; the config must be struct-mode so unknown keys fail loudly."""
    for item in overrides:
        if "=" not in item:
            raise InputError(None, f"override {item!r} is not key=value")
    OmegaConf.set_struct(cfg, True)
    try:
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except (ConfigAttributeError, ConfigKeyError) as exc:
        raise InputError(None, f"unknown config key in overrides: {exc.key if hasattr(exc, 'key') else exc}") from None
    except ValidationError as exc:
        raise InputError(None, f"bad override value: {str(exc).splitlines()[0]}") from None


def load_experiment(path: Path, _seen: tuple = ()) -> DictConfig:
    """An experiment override file, merged on top of the file its `base:` key names (a path relative
    to it; bases may chain). The `base` key itself is not part of the config."""
    path = Path(path)
    if path.resolve() in _seen:
        raise InputError(path, "experiment files name each other as base (a cycle)")
    from hm_talker.safe_read import load_yaml_config

    node = load_yaml_config(path)  # syntax errors, binary files, !!python tags: one line naming the file
    base = node.pop("base", None)
    if base is None:
        return node
    base_path = path.parent / str(base)
    if not base_path.is_file():
        raise InputError(path, f"base experiment {base} not found")
    return OmegaConf.merge(load_experiment(base_path, _seen + (path.resolve(),)), node)
