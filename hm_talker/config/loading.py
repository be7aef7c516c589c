"""The one config loader of every command: schema defaults <- an experiment file (and the `base:` files
it names) <- `key=value` overrides. Unknown keys are an error (struct mode); `${...}` interpolations
and resolvers are refused in the user's text before anything is resolved."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from hm_talker.errors import InputError
from hm_talker.validate import refuse_interpolation, refuse_interpolation_overrides


def load_structured(schema, config_path: str | Path | None, overrides: list[str]) -> DictConfig:
    """`schema` (a dataclass) defaults <- CONFIG file (with its bases) <- overrides, in struct mode."""
    cfg = OmegaConf.structured(schema)
    OmegaConf.set_struct(cfg, True)
    if config_path is not None:
        path = Path(config_path)
        user = load_experiment(path)  # with the `base:` files it names, each read safely
        refuse_interpolation(OmegaConf.to_container(user, resolve=False), path)
        try:
            cfg = OmegaConf.merge(cfg, user)
        except OmegaConfBaseException as exc:
            raise InputError(path, f"bad config: {str(exc).splitlines()[0]}") from None
    refuse_interpolation_overrides(list(overrides))
    return merge_overrides(cfg, list(overrides))


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


def flat_dict(cfg) -> dict:
    """{'a.b.c': value} of the resolved config (for W&B and summary.json)."""
    out: dict = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg, "")
    return out
