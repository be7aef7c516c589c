"""OmegaConf helpers: `key=value` overrides onto a structured config; unknown keys are an error."""
from __future__ import annotations

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
