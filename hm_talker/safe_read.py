"""Reading the files a user hands us (JSON, YAML, checkpoints): any defect is one InputError naming the file."""
from __future__ import annotations

import json
from pathlib import Path

from hm_talker.errors import InputError


def read_json(path, what: str = "JSON file") -> object:
    """Parse a JSON file; missing, unreadable, binary or malformed -> InputError(path, ...)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, f"no such {what}") from None
    except IsADirectoryError:
        raise InputError(path, f"{what} is a directory") from None
    except UnicodeDecodeError:
        raise InputError(path, f"not a {what} (binary content)") from None
    except OSError as exc:
        raise InputError(path, f"cannot read {what} ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(path, f"malformed {what}: not valid JSON ({str(exc).splitlines()[0]})") from None


def load_yaml_config(path):
    """An OmegaConf config from a YAML file, refusing syntax errors, binary files and tags such as
    !!python/object (yaml's safe loader never constructs them) with one line naming the file."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "config file not found")
    try:
        cfg = OmegaConf.load(path)
    except UnicodeDecodeError:
        raise InputError(path, "not a YAML config (binary content)") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:200]
        raise InputError(path, f"bad YAML ({first})") from None
    except (OmegaConfBaseException, ValueError, TypeError) as exc:
        raise InputError(path, f"bad config: {str(exc).splitlines()[0]}") from None
    except OSError as exc:  # OmegaConf's "Invalid loaded object type: int" (a scalar or null file) is an OSError
        if "Invalid loaded object type" not in str(exc):
            raise
        raise InputError(path, f"a config file must hold a mapping of keys (key: value), not {str(exc).split(': ')[-1]}") from None
    if not OmegaConf.is_dict(cfg):
        raise InputError(path, "a config file must hold a mapping of keys (key: value)")
    return cfg


def load_checkpoint(path, what: str = "checkpoint") -> dict:
    """torch.load with weights_only=True (no code runs); truncated / random / pickled-code -> InputError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"no such {what}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, a pickle with code: all "corrupt" to a user
        raise InputError(path, f"corrupt or unsafe {what} ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict):
        raise InputError(path, f"not an hm-talker {what}")
    return ckpt
