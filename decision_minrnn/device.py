"""The torch device a setting names."""

from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(name: str, what: str = "train.device") -> torch.device:
    """auto -> CUDA when present, else CPU. `what` names the setting in errors (train.device, --device)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{what}={name!r} is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{what}={name} but no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{what}={name!r}: only cpu and cuda are supported")
    return device
