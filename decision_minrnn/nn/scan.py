"""Scans for the first-order linear recurrence h_t = a_t * h_{t-1} + b_t over the time axis.

Shapes: a, b are (B, T, H); h0 is (B, H) or None (zeros); the result h is (B, T, H).

Three exact implementations of the same math:

* ``scan_log``: the log-space parallel scan of Heinsen (2023), as used by "Were RNNs All We Needed?"
  (Feng et al. 2024, appendix B) and the official code (BorealisAI/minRNNs):
  ``a* = cumsum(log a)``, ``log h = a* + logcumsumexp(log b - a*)``. It is the reference. It needs
  b > 0 (the minRNN cells guarantee it: b = z * g(.) with g > 0). An initial state enters as
  ``A_t * h0`` in h-space, never through g again (public code that prepends ``log_g(h0)`` applies
  g twice).
* ``scan_sequential``: a loop over T vectorized over (B, H), with a hand-written backward that is
  itself a reverse scan. On CPU ``logcumsumexp`` is a scalar loop, while this does O(B T H) work in
  T fused multiply-adds: it is the fastest exact path measured on CPU (see docs/results.md and docs/speed.md).
* ``scan_chunked``: the sequence is cut into chunks of C steps; a loop over C positions runs in all
  chunks at once, then a loop over the chunks carries the state: O(C + T / C) Python steps
  instead of T. Useful where per-op launch cost dominates (GPU, very long T).

Linear-space scans are as exact as the log-space one here (a in (0, 1), b > 0: no cancellation, no
division), and ``linear_scan(method="auto")`` picks per device from ``AUTO_METHOD``, which records
what scripts/bench_scan.py measured. All scans run in float32 even under autocast: bf16 loses the
``a*`` cancellation at T ~ 1000.
"""

from __future__ import annotations

import math
import sys

import torch
from torch.autograd.function import once_differentiable

from ..choices import SCAN_METHODS

# CPU: the fastest exact scan measured (scripts/bench_scan.py, docs/speed.md section 1).
# CUDA: the chunked linear-space scan, chosen for accuracy (docs/speed.md section 9): on long sequences with
# saturated gates the log-space scan's float32 error grows with T, the linear-space scans' does not. Its
# speed on a GPU is not measured yet.
AUTO_METHOD = {"cpu": "sequential", "cuda": "chunked"}
# CPU, except a long sequence over few lanes (batch x hidden per step: 1-2 whole episodes at width 128): then
# the sequential loop's per-step ops are too small to pay their launch, and the chunked scan over the whole
# sequence (no time chunks: _MinCell.forward) is faster, in the cell and in the model's training step
# (scripts/bench_scan.py --shapes, docs/speed.md section 1b). At 4 x 128 lanes the cell gains but the model's
# step did not measurably; from 16 x 128 it is slower.
FEW_LANES = 256
LONG_SEQUENCE = 128


def at_least_float32(t: torch.Tensor | None) -> torch.Tensor | None:
    """bf16 / fp16 -> float32; float32 and float64 stay as they are (float64 is what the exactness tests use)."""
    return None if t is None else (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t)


def scan_log(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Reference log-space scan (Heinsen 2023). Takes log a and log b, returns h (not log h).

    h_t = exp(a*_t) * h0 + exp(a*_t + logcumsumexp(log b - a*)_t), with a*_t = sum_{s<=t} log a_s.
    h0 may have any sign: it is added in h-space rather than through its log.
    """
    a_star = torch.cumsum(log_a, dim=1)
    h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))
    if h0 is not None:
        h = h + torch.exp(a_star) * h0.unsqueeze(1)
    return h


def _sequential_forward(a_tm, b_tm, h0, reverse=False):
    """Loop over time for time-major a, b of shape (T, B, H). Writes each step into its output slot.

    reverse=False: h_t = a_t h_{t-1} + b_t, with h_{-1} = h0.
    reverse=True:  g_t = b_t + a_{t+1} g_{t+1}, with g_T = 0 (the adjoint recurrence of the backward).
    """
    T = a_tm.shape[0]
    out = torch.empty_like(b_tm)
    if not reverse:
        if h0 is None:
            out[0].copy_(b_tm[0])
        else:
            torch.addcmul(b_tm[0], a_tm[0], h0, out=out[0])
        for t in range(1, T):
            torch.addcmul(b_tm[t], a_tm[t], out[t - 1], out=out[t])
    else:
        out[T - 1].copy_(b_tm[T - 1])
        for t in range(T - 2, -1, -1):
            torch.addcmul(b_tm[t], a_tm[t + 1], out[t + 1], out=out[t])
    return out


def _grads_from_adjoint(grad_h, a, h, h0):
    """Given dL/dh_t accumulated through the recurrence (gh), return grads of a, b and h0."""
    h_prev = torch.empty_like(h)
    h_prev[:, 1:] = h[:, :-1]
    if h0 is None:
        h_prev[:, 0] = 0
    else:
        h_prev[:, 0] = h0
    grad_a = grad_h * h_prev
    grad_h0 = None if h0 is None else grad_h[:, 0] * a[:, 0]
    return grad_a, grad_h, grad_h0


def _fold_vmapped(info, in_dims, *tensors):
    """For the scans' vmap rules: every (batch, feature) lane is an independent recurrence, so the vmapped
    dim folds into the batch dim and one scan runs over all lanes, exactly what each vmapped slice would
    compute alone (update.SeedGroup trains several seeds' models this way). Returns (B*n, ...) tensors."""
    n = info.batch_size

    def fold(t, dim):
        if t is None:
            return None
        t = t.movedim(dim, 0) if dim is not None else t.unsqueeze(0).expand(n, *t.shape)
        return t.flatten(0, 1)

    return [fold(t, d) for t, d in zip(tensors, in_dims)]


class _SequentialScan(torch.autograd.Function):
    # forward / setup_context / vmap (not forward(ctx, ...)): the form torch.func's vmap accepts.
    @staticmethod
    def forward(a, b, h0):
        a_tm = a.transpose(0, 1).contiguous()
        b_tm = b.transpose(0, 1).contiguous()
        return _sequential_forward(a_tm, b_tm, h0).transpose(0, 1), a_tm  # a_tm: kept for the backward

    @staticmethod
    def setup_context(ctx, inputs, output):
        h, a_tm = output
        ctx.mark_non_differentiable(a_tm)
        ctx.save_for_backward(a_tm, h, inputs[2])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, _grad_a_tm):
        a_tm, h, h0 = ctx.saved_tensors
        g_tm = grad_out.transpose(0, 1).contiguous()
        grad_h = _sequential_forward(a_tm, g_tm, None, reverse=True).transpose(0, 1)
        grad_a, grad_b, grad_h0 = _grads_from_adjoint(grad_h, a_tm.transpose(0, 1), h, h0)
        return grad_a, grad_b, grad_h0

    @staticmethod
    def vmap(info, in_dims, a, b, h0):
        h, a_tm = _SequentialScan.apply(*_fold_vmapped(info, in_dims[:3], a, b, h0))
        n = info.batch_size
        return (h.unflatten(0, (n, -1)), a_tm.unflatten(1, (n, -1))), (0, 1)


def _chunked_forward(a, b, h0, chunk):
    """Chunked linear-space scan of (B, T, H) inputs; O(chunk + T / chunk) Python steps."""
    B, T, H = a.shape
    n = math.ceil(T / chunk)
    pad = n * chunk - T
    if pad:
        # Identity steps (a = 1, b = 0) at the end leave every real h_t unchanged.
        a = torch.cat([a, a.new_ones(B, pad, H)], dim=1)
        b = torch.cat([b, b.new_zeros(B, pad, H)], dim=1)
    # (C, B, n, H): one contiguous slab per position inside a chunk, all chunks at once.
    a_c = a.view(B, n, chunk, H).permute(2, 0, 1, 3).contiguous()
    b_c = b.view(B, n, chunk, H).permute(2, 0, 1, 3).contiguous()
    local = _sequential_forward(a_c, b_c, None)  # scan inside each chunk from a zero state
    decay = torch.cumprod(a_c, dim=0)  # prod of a from the chunk start to each position
    # Carry the state across chunks: state entering chunk j.
    carries = torch.empty(n, B, H, dtype=a.dtype, device=a.device)
    carry = a.new_zeros(B, H) if h0 is None else h0
    for j in range(n):
        carries[j] = carry
        carry = torch.addcmul(local[-1, :, j], decay[-1, :, j], carry)
    h_c = torch.addcmul(local, decay, carries.permute(1, 0, 2).unsqueeze(0))
    h = h_c.permute(1, 2, 0, 3).reshape(B, n * chunk, H)
    return h[:, :T]


def _default_chunk(T: int) -> int:
    return max(1, int(math.sqrt(T)))


class _ChunkedScan(torch.autograd.Function):
    @staticmethod
    def forward(a, b, h0, chunk):
        return _chunked_forward(a, b, h0, chunk)

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, _, h0, chunk = inputs
        ctx.save_for_backward(a, output, h0)
        ctx.chunk = chunk

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        a, h, h0 = ctx.saved_tensors
        # The adjoint gh_t = g_t + a_{t+1} gh_{t+1} is a forward scan on the time-reversed sequence
        # with coefficients shifted by one step.
        a_next = torch.zeros_like(a)
        a_next[:, :-1] = a[:, 1:]
        grad_h = _chunked_forward(a_next.flip(1), grad_out.flip(1).contiguous(), None, ctx.chunk).flip(1)
        grad_a, grad_b, grad_h0 = _grads_from_adjoint(grad_h, a, h, h0)
        return grad_a, grad_b, grad_h0, None

    @staticmethod
    def vmap(info, in_dims, a, b, h0, chunk):
        h = _ChunkedScan.apply(*_fold_vmapped(info, in_dims[:3], a, b, h0), chunk)
        return h.unflatten(0, (info.batch_size, -1)), 0


def scan_sequential(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Exact scan as a loop over T, vectorized over (B, H), with an O(T) reverse-scan backward."""
    # Under vmap a tensor reports requires_grad=False even when its physical data needs a gradient, and the
    # loop's out= writes have no batching rule: vmapped inputs always go through the Function (its vmap rule).
    no_grad_needed = not any(t is not None and t.requires_grad for t in (a, b, h0))
    if not torch.is_grad_enabled() or (no_grad_needed and not torch._C._functorch.is_batchedtensor(a)):
        # Inference (e.g. a rollout feeding 3 tokens per env step): skip the autograd Function's
        # bookkeeping and contiguous copies, which cost more than the loop itself at small T.
        return _sequential_forward(a.transpose(0, 1), b.transpose(0, 1), h0).transpose(0, 1)
    return _SequentialScan.apply(a, b, h0)[0]


def scan_chunked(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, chunk: int | None = None
) -> torch.Tensor:
    """Exact chunked linear-space scan; chunk defaults to sqrt(T)."""
    return _ChunkedScan.apply(a, b, h0, chunk or _default_chunk(a.shape[1]))


def opaque_to_compile() -> None:
    """Hide the scans from torch.compile: its tracer would unroll their time loop T times. With the scans
    opaque, compiling a model still fuses the elementwise gate math around them. Called by the paths of this
    package that compile training (train.compile, compile_gates); call it yourself before torch.compile-ing one
    of our modules over long sequences. A sequence of at most UNROLL_STEPS tokens (the compiled Policy's step)
    is unrolled into the graph either way (linear_scan). Not done at import, because torch.compiler.disable
    imports torch._dynamo, which doubles the start-up of every command (docs/speed.md section 8)."""
    global scan_sequential, scan_chunked
    if not getattr(scan_sequential, "_opaque", False):
        scan_sequential = torch.compiler.disable(scan_sequential)
        scan_chunked = torch.compiler.disable(scan_chunked)
        scan_sequential._opaque = scan_chunked._opaque = True


def resolve_method(method: str, device: torch.device, lanes: int | None = None, length: int | None = None) -> str:
    """The scan `method` names; for "auto", the one measured fastest on the device, for a (B, T, H) scan of
    lanes = B * H and length = T where they are given."""
    if method == "auto":
        if device.type == "cpu" and lanes is not None and lanes <= FEW_LANES and (length or 0) > LONG_SEQUENCE:
            return "chunked"
        return AUTO_METHOD.get(device.type, "sequential")
    if method not in SCAN_METHODS:
        raise ValueError(f"unknown scan method {method!r}; choose one of auto, {', '.join(SCAN_METHODS)}")
    return method


# Under torch.compile, sequences up to this long (one env step's tokens: the compiled Policy) are unrolled into the
# graph: an opaque scan (opaque_to_compile) would break it in every layer, and the scans' out= writes into a
# strided buffer cannot be traced.
UNROLL_STEPS = 4


def _unrolled(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """The sequential scan's addcmul per step, stacked: what torch.compile traces whole for a short sequence."""
    steps, h = [], h0
    for t in range(a.shape[1]):
        h = b[:, t] if h is None else torch.addcmul(b[:, t], a[:, t], h)
        steps.append(h)
    return torch.stack(steps, dim=1)


def linear_scan(
    a: torch.Tensor,
    b: torch.Tensor,
    h0: torch.Tensor | None = None,
    method: str = "auto",
) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t for (B, T, H) inputs, in float32, by the chosen exact method.

    method "log" takes a and b in linear space here and goes through their logs (b must be > 0);
    the cells call ``scan_log`` directly with stably computed logs instead.
    """
    method = resolve_method(method, a.device, a.shape[0] * a.shape[2], a.shape[1])
    with torch.autocast(device_type=a.device.type, enabled=False):
        a, b, h0 = at_least_float32(a), at_least_float32(b), at_least_float32(h0)
        h0 = None if h0 is None else h0.to(a.dtype)
        if torch.compiler.is_compiling() and a.shape[1] <= UNROLL_STEPS and method != "log":
            return _unrolled(a, b, h0)
        if method == "log":
            return scan_log(torch.log(a), torch.log(b), h0)
        if method == "chunked":
            return scan_chunked(a, b, h0)
        return scan_sequential(a, b, h0)


if "torch._dynamo" in sys.modules:  # dynamo is loaded already (someone compiles): hide the scans now
    opaque_to_compile()
