"""The torch device a setting names."""

from __future__ import annotations

import platform

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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX tiles). Without them oneDNN emulates
    bf16 and a bf16 matmul is several times slower than float32 (docs/speed.md section 3b)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's probes (torch >= 2.1)
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; the platform's processor string elsewhere): timings taken on
    two machines do not compare, and the machines this project runs on change between sessions."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs on hardware support on this device."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def resolve_amp(amp: str, device: torch.device) -> str:
    """train.amp as a run applies it: auto -> bf16 where native_bf16(device), none elsewhere."""
    if amp != "auto":
        return amp
    return "bf16" if native_bf16(device) else "none"


def amp_reason(amp: str, device: torch.device) -> str:
    """Why train.amp resolves as it does here, for the start line: 'bf16: this CPU has AVX512-BF16'."""
    resolved = resolve_amp(amp, device)
    precision = "bf16 autocast" if resolved == "bf16" else "float32"
    if amp != "auto":
        return f"{precision} (train.amp={amp})"
    if device.type == "cuda":
        return f"{precision} (auto: this GPU {'has' if resolved == 'bf16' else 'lacks'} bf16)"
    units = "has AVX512-BF16 or AMX" if resolved == "bf16" else "has no AVX512-BF16 or AMX"
    return f"{precision} (auto: this CPU {units})"
