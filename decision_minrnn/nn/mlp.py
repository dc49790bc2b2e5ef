"""The blocks' GELU MLP, Linear -> GELU -> Linear, with GELU recomputed in the backward.

Plain autograd keeps two (B, T, 4D) tensors per MLP for the backward: GELU's input (for GELU's gradient) and
its output (for the second Linear's weight gradient). At long context they are the largest saved tensors of a
minRNN training step (docs/speed.md section 13b: the MLPs held 90 of the 192 MiB saved at K = 1000). `_GeluLinear`
fuses GELU with the second Linear and keeps only GELU's input; the backward recomputes GELU from it (one
elementwise pass), which halves the MLP's saved activations. The numbers are the same ops as autograd's
(tests/nn/test_mlp.py: equal outputs and gradients, eager and under autocast and vmap).

The recomputation costs an exact GELU pass (erf) per layer, within the noise of its measurement on a DT-size
step (about 3%, scripts/bench_memory_savers.py, docs/speed.md section 13b). The Function runs where memory
binds and it is safe: training a sequence longer than LONG_SEQUENCE tokens (whole episodes, long K; the length
from which the CPU scan changes method too) with gradients on, in eager mode. DT's K = 20 windows (60 tokens)
keep the plain modules, as do torch.compile (inductor's partitioner already recomputes cheap pointwise ops
instead of saving them) and eval, no_grad or inference (the Policy, the ONNX export), where nothing is saved.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .scan import LONG_SEQUENCE


class _GeluLinear(torch.autograd.Function):
    """y = gelu(h) @ W^T + b, saving h (not gelu(h)) for the backward."""

    # forward / setup_context (not forward(ctx, ...)) with generate_vmap_rule: the form torch.func's vmap accepts
    # (the seed group's vmapped forward and backward); every op below has a batching rule.
    generate_vmap_rule = True

    @staticmethod
    def forward(h, weight, bias):
        return F.linear(F.gelu(h), weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        h, weight, bias = inputs
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_y):
        h, weight = ctx.saved_tensors
        a = F.gelu(h)  # the recomputation: the one tensor not kept
        # Linear's backward as autograd computes it (addmm's, on the flattened leading dims).
        g2 = grad_y.reshape(-1, grad_y.shape[-1])
        grad_weight = None
        if ctx.needs_input_grad[1]:  # a^T g, transposed: the operand order autograd's addmm backward uses
            grad_weight = a.reshape(-1, a.shape[-1]).t().mm(g2).t()
        grad_bias = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        grad_h = None
        if ctx.needs_input_grad[0]:
            grad_a = grad_y.matmul(weight)
            grad_h = torch.ops.aten.gelu_backward(grad_a, h)
        return grad_h, grad_weight, grad_bias


def gelu_linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear(F.gelu(h), weight, bias) that keeps h, not gelu(h), for the backward. h: (..., H) -> (..., D)."""
    device_type = h.device.type
    if torch.is_autocast_enabled(device_type):
        # What autocast does to a Linear's inputs, done here as graph ops (their casts' gradients are autograd's),
        # so that the Function itself runs in one dtype with autocast off, in its backward too.
        dtype = torch.get_autocast_dtype(device_type)
        h, weight = h.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
        with torch.autocast(device_type=device_type, enabled=False):
            return _GeluLinear.apply(h, weight, bias)
    return _GeluLinear.apply(h, weight, bias)


class GeluMLP(nn.Sequential):
    """Linear(dim, hidden) -> GELU -> Linear(hidden, dim): an nn.Sequential with the same parameter names
    (mlp.0.*, mlp.2.*) as before, whose training forward over a long sequence saves GELU's input only (module
    docstring)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., T, dim) -> (..., T, dim)."""
        long = x.dim() >= 3 and x.shape[-2] > LONG_SEQUENCE
        if long and self.training and torch.is_grad_enabled() and not torch.compiler.is_compiling():
            out = self[2]
            return gelu_linear(self[0](x), out.weight, out.bias)
        return super().forward(x)
