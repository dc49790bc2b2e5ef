"""Dropout with a choice of mask generator: torch's, or one whose masks cost a few elementwise ops on CPU.

`torch` is nn.functional.dropout: one Bernoulli draw per element from the global generator, which on CPU
costs far more than applying the mask (docs/speed.md section 3b has the profile and the ratio).

`fast` draws 64 random bits per four elements with one torch.randint over the whole int64 range and splits
them into four 16-bit lanes; an element is kept where its lane is at or above a threshold. So:
* each element is kept with probability q = (2^16 - round(p * 2^16)) / 2^16, within 2^-17 of 1 - p, and the
  kept values are scaled by 1 / q, so that the expectation is exactly the input's;
* the lanes of one draw are disjoint bits of one uniform 64-bit word, so elements are independent, and
  every call takes fresh words from the generator, so layers and steps are independent too
  (tests/nn/test_dropout.py checks the mean and the pairwise independence);
* the bits come from torch's global generator (the CUDA one on a CUDA tensor), whose state a checkpoint
  already keeps (train.py's rng.torch / rng.cuda), so a resumed run draws the same masks as one never
  interrupted; under vmap with randomness="different" (update.SeedGroup) each seed gets its own bits.
The two are different random streams, so a run with `fast` is not bit-identical to one with `torch`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..choices import DROPOUT_IMPLS
from .scan import LONG_SEQUENCE

LANE_BITS = 16
_LANES = 64 // LANE_BITS
_LANE_VALUES = 1 << LANE_BITS


def keep_probability(p: float) -> float:
    """The probability with which `fast` keeps an element for dropout rate p (p quantized to 2^-16)."""
    return (_LANE_VALUES - round(p * _LANE_VALUES)) / _LANE_VALUES


def fast_keep_mask(shape: torch.Size | tuple, p: float, device: torch.device | None = None) -> torch.Tensor:
    """A bool tensor of `shape`, True with probability keep_probability(p), independently per element."""
    n = math.prod(shape)
    words = torch.randint(-(2**63), 2**63 - 1, ((n + _LANES - 1) // _LANES,), dtype=torch.int64, device=device)
    lanes = words.view(torch.int16)[:n]  # four uniform signed 16-bit lanes per word
    return (lanes >= -(2**15) + round(p * _LANE_VALUES)).view(shape)


def _masked(x: torch.Tensor, keep: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """x * scale where keep, 0 elsewhere. torch.where keeps only the bool mask for the backward (x * scale by a
    constant keeps nothing): a quarter of the float mask that x * (mask * scale) keeps."""
    return torch.where(keep, x * scale, 0.0)


def _long(x: torch.Tensor) -> bool:
    """Whether x is a long sequence's activations ((..., T, D) or attention's (..., L, L) with T, L above
    LONG_SEQUENCE): where memory binds, and where the bool mask is worth its extra elementwise pass in the
    backward (at DT's K = 20 it was not measurably cheaper or dearer; docs/speed.md section 13b)."""
    return x.dim() >= 3 and x.shape[-2] > LONG_SEQUENCE


def dropout(x: torch.Tensor, p: float, training: bool, impl: str = "torch") -> torch.Tensor:
    """Inverted dropout of x at rate p with the named mask generator (see the module docstring). Over a long
    sequence the backward keeps a bool mask, not a float one (_masked), with the same numbers."""
    if not training or p == 0.0:
        return x
    if impl == "torch":
        if x.device.type != "cpu" or not _long(x):  # CUDA's fused dropout keeps a bool mask already
            return F.dropout(x, p, training=True)
        # ATen's CPU dropout (_dropout_impl) as it draws and scales, the same random stream and the same
        # numbers (tests/nn/test_dropout.py), but drawn into and kept as a bool mask, not the float noise tensor.
        keep = torch.empty_like(x, dtype=torch.bool).bernoulli_(1 - p)
        return _masked(x, keep, torch.ones((), dtype=x.dtype).div_(1 - p))
    q = keep_probability(p)
    if q == 0.0:
        raise ValueError(f"dropout p={p} drops every element")
    keep = fast_keep_mask(x.shape, p, x.device)
    if _long(x):
        return _masked(x, keep, 1.0 / q)
    return x * (keep.to(x.dtype) * (1.0 / q))  # autograd keeps the one scaled float mask


class Dropout(nn.Module):
    """nn.Dropout with a mask generator chosen by `impl` (model.dropout_impl): torch | fast."""

    def __init__(self, p: float = 0.1, impl: str = "torch"):
        super().__init__()
        if impl not in DROPOUT_IMPLS:
            raise ValueError(f"unknown dropout impl {impl!r}; choose one of {', '.join(DROPOUT_IMPLS)}")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p={p} must be in [0, 1)")
        self.p, self.impl = p, impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, self.impl)

    def extra_repr(self) -> str:
        return f"p={self.p}, impl={self.impl}"
