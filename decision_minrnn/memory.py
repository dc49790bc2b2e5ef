"""A memory estimate before allocating: a setting that cannot fit is refused with one line naming what to
lower, instead of growing past the machine's memory for tens of seconds or ending in an allocation traceback.

The estimates count float32 everywhere: parameters with their gradients and AdamW's two moments (16 bytes
each), plus the activations that a training step keeps for its backward pass, times ALLOCATOR_SLACK: the
process's peak RSS is not the tensors' bytes. glibc serves blocks below its mmap threshold (32 MiB) from a
heap it keeps after they are freed, so a step whose activations come in smaller tensors (a smaller batch,
a long context at a small one) peaked at up to 1.9x their bytes, and one in larger tensors at 0.9-1.1x
(docs/speed.md section 13b has the measurements, for every backbone, both layouts, K from 20 to 1000). With
the slack, and FIXED_BYTES for what a step holds at any size, the estimate is an upper bound on all of them,
and within about 2x of each at the sizes where the check matters (tests/test_memory.py).
A setting is refused when its estimate exceeds 90% of the memory available now.
"""

from __future__ import annotations

import os

from .choices import BACKBONE_REGISTRY, TOKENS_PER_STEP
from .errors import ConfigError

FLOAT = 4
ACTIVATIONS_PER_TOKEN_LAYER = 24  # floats x width kept per token per layer: norms, gates, scan, 4x MLP, residuals
ENV_BYTES = 8 * 2**20  # one MuJoCo env with its Gymnasium wrappers, generously
SAFETY = 0.9  # of the memory available now
ALLOCATOR_SLACK = 2.0  # peak RSS over the activations' bytes: at most 1.9 measured (module docstring)
# What a training process adds whatever its size: small settings peaked up to 70 MiB above their tensors' bytes,
# which is mostly torch._dynamo's code, imported when torch's AdamW is first built (docs/speed.md section 13b);
# the rest is autograd's and the allocator's working set and the optimizer's scratch.
FIXED_BYTES = 128 * 2**20


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else physical memory; None if neither can be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def training_bytes(cfg, obs_dim: int, act_dim: int, tokens_per_step: int, context_len: int) -> int:
    m = cfg.model
    width = max(m.embed_dim, int(m.embed_dim * m.expansion))
    per_layer_params = 12 * width * width  # gates (up to 3 x H x D) + MLP (2 x mlp_ratio x D^2) + norms, rounded up
    params = m.n_layers * per_layer_params + cfg.data.max_ep_len * m.embed_dim + (obs_dim + act_dim + 1) * m.embed_dim
    tokens = cfg.train.batch_size * context_len * tokens_per_step
    activations = tokens * m.n_layers * ACTIVATIONS_PER_TOKEN_LAYER * m.embed_dim
    if BACKBONE_REGISTRY[m.backbone].attention:  # attention scores and probabilities, per head and layer
        length = context_len * tokens_per_step
        activations += 2 * cfg.train.batch_size * m.n_heads * m.n_layers * length * length
    return FLOAT * (4 * params + ALLOCATOR_SLACK * activations) + FIXED_BYTES


def check_training_memory(cfg, obs_dim: int, act_dim: int, context_len: int, models: int = 1) -> None:
    """models: how many models train at once (a seed group, train.seeds)."""
    tokens_per_step = TOKENS_PER_STEP[cfg.model.token_layout]
    need, have = models * training_bytes(cfg, obs_dim, act_dim, tokens_per_step, context_len), available_bytes()
    if have is not None and need > SAFETY * have:
        raise ConfigError(
            f"a training step would need about {need / 2**30:.1f} GiB, more than the "
            f"{have / 2**30:.1f} GiB available; lower train.batch_size, data.context_len or "
            f"model.embed_dim (now {cfg.train.batch_size}, {context_len}, {cfg.model.embed_dim})"
            + (f", or train fewer seeds at once (now {models})" if models > 1 else "")
        )


def check_evaluation_memory(episodes: int) -> None:
    need, have = episodes * ENV_BYTES, available_bytes()
    if have is not None and need > SAFETY * have:
        raise ConfigError(
            f"{episodes} episodes at once would need about {need / 2**30:.1f} GiB of environments, "
            f"more than the {have / 2**30:.1f} GiB available; lower --episodes / eval.episodes"
        )
