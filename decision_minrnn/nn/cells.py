"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", section 3 and appendix B).

Both cells drop the dependence of their gates on h_{t-1}, which turns the recurrence into
h_t = a_t * h_{t-1} + b_t with a, b computed from x alone, so training runs as a parallel scan over the
sequence while inference steps one token at a time with a carried state of shape (B, H).

Following appendix B (and BorealisAI/minRNNs), the candidate state goes through
g(x) = x + 0.5 for x >= 0 and sigmoid(x) otherwise, which keeps h positive so the log-space scan is
defined. Every module exposes the same pair:

    forward(x: (B, T, D), h0: (B, H) | None) -> (y: (B, T, D), h_T: (B, H))
    step(x_t: (B, D), h: (B, H) | None)      -> (y_t: (B, D), h)

and the two give the same numbers (tests/nn/test_cells.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .compiled import call_compiled
from .scan import at_least_float32, linear_scan, resolve_method, scan_log


def g(x: torch.Tensor) -> torch.Tensor:
    """Appendix B: g(x) = x + 0.5 for x >= 0, sigmoid(x) otherwise (continuous, positive)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log g(x), computed stably: log(relu(x) + 0.5) for x >= 0, -softplus(-x) otherwise."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


class _MinCell(nn.Module):
    """Shared plumbing: input projection, optional down-projection, scan dispatch, step."""

    n_chunks: int  # how many H-wide slices the input projection produces

    def __init__(
        self,
        dim: int,
        expansion: float = 1.0,
        proj_out: bool | None = None,
        scan: str = "auto",
        bias: bool = False,
        time_chunk: int | None = 128,
        compile_gates: bool = False,
    ):
        super().__init__()
        # compile_gates: the training forward runs the elementwise gate math through torch.compile (fused
        # loops instead of one memory pass per op; nn/compiled.py). Off by default: the first call compiles
        # for seconds, which only pays off over a long training run. Inference steps always run eagerly.
        self.compile_gates = compile_gates
        # On CPU, sequences longer than time_chunk run in time chunks with the carried state: the same math
        # (tested equal to one pass), but each chunk's (B, chunk, H) intermediates stay cache-sized instead of
        # streaming (B, T, H) tensors through memory; what it gains per T is in docs/speed.md section 1
        # (scripts/bench_scan.py). None turns it off.
        self.time_chunk = time_chunk
        self.dim = dim
        self.hidden_dim = int(round(dim * expansion))
        self.scan = scan
        # The official code maps x to all gate pre-activations with one bias-free Linear.
        self.to_gates = nn.Linear(dim, self.n_chunks * self.hidden_dim, bias=bias)
        if proj_out is None:
            proj_out = self.hidden_dim != dim
        if not proj_out and self.hidden_dim != dim:
            raise ValueError("expansion != 1 needs proj_out=True to map the hidden state back to dim")
        # When expanded, project back down to the model width (the paper's "expansion factor").
        self.to_out = nn.Linear(self.hidden_dim, dim, bias=False) if proj_out else nn.Identity()

    # Subclasses define coeffs(pre) -> (a, b) and log_coeffs(pre) -> (log a, log b) as static methods of the
    # gate pre-activations `pre` of shape (..., n_chunks * H): pure functions, so they can be compiled.

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None):
        """x: (B, T, D), h0: (B, H) or None (zeros) -> y: (B, T, D), h_T: (B, H)."""
        # resolved once for the whole sequence; the chunked scan that scan="auto" picks for a long sequence over
        # few lanes runs in one pass, not in time chunks
        method = resolve_method(self.scan, x.device, x.shape[0] * self.hidden_dim, x.shape[1])
        whole = self.scan == "auto" and method == "chunked"
        if self.time_chunk and x.device.type == "cpu" and x.shape[1] > self.time_chunk and not whole:
            ys, h = [], h0
            for x_chunk in x.split(self.time_chunk, dim=1):
                y, h = self._forward_chunk(x_chunk, h, method)
                ys.append(y)
            return torch.cat(ys, dim=1), h
        return self._forward_chunk(x, h0, method)

    def _forward_chunk(self, x: torch.Tensor, h0: torch.Tensor | None, method: str):
        """method: a resolved scan method (resolve_method), never "auto"."""
        # Gates are computed in float32 even under autocast: the scan needs them exact.
        pre = at_least_float32(self.to_gates(x))
        h0 = None if h0 is None else h0.to(pre.dtype)
        log_space = method == "log"
        coeff_fn = self.log_coeffs if log_space else self.coeffs
        # Compiled only when training: inference steps feed a few tokens, where the compiled call's guard
        # checks would cost more than the fused loop saves.
        if self.compile_gates and torch.is_grad_enabled():
            a, b = call_compiled(coeff_fn, pre)
        else:
            a, b = coeff_fn(pre)
        if log_space:
            with torch.autocast(device_type=x.device.type, enabled=False):
                h = scan_log(a, b, h0)  # a, b are log a, log b here
        else:
            h = linear_scan(a, b, h0, method=method)
        y = self.to_out(h.to(x.dtype))
        return y, h[:, -1]

    def step(self, x_t: torch.Tensor, h: torch.Tensor | None = None):
        """One recurrence step: x_t (B, D), h (B, H) or None -> y_t (B, D), new h (B, H)."""
        pre = at_least_float32(self.to_gates(x_t))
        a, b = self.coeffs(pre)
        h = b if h is None else torch.addcmul(b, a, h.to(b.dtype))
        y = self.to_out(h.to(x_t.dtype))
        return y, h

    def initial_state(self, batch_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
        return torch.zeros(batch_size, self.hidden_dim, device=device, dtype=dtype)


class MinGRU(_MinCell):
    """minGRU: z_t = sigmoid(W_z x_t), h~_t = g(W_h x_t), h_t = (1 - z_t) h_{t-1} + z_t h~_t."""

    n_chunks = 2

    @staticmethod
    def log_coeffs(pre):
        k, h_tilde = pre.chunk(2, dim=-1)
        # log(1 - z) = -softplus(k), log z = -softplus(-k)  (appendix B)
        return -F.softplus(k), -F.softplus(-k) + log_g(h_tilde)

    @staticmethod
    def coeffs(pre):
        k, h_tilde = pre.chunk(2, dim=-1)
        z = torch.sigmoid(k)
        return torch.sigmoid(-k), z * g(h_tilde)


class MinLSTM(_MinCell):
    """minLSTM: f_t, i_t = sigmoid(W_f x_t), sigmoid(W_i x_t); normalized f' = f/(f+i), i' = i/(f+i);
    h_t = f'_t h_{t-1} + i'_t g(W_h x_t).

    forget_bias: when given, the gate projection gets a bias whose forget slice starts at this value.
    The authors note that a positive forget-gate bias at initialization speeds up training (it starts
    the cell remembering, like the classic LSTM forget-bias trick of Jozefowicz et al. 2015).
    """

    n_chunks = 3

    def __init__(self, dim: int, forget_bias: float | None = None, **cell_kwargs):
        """cell_kwargs: the shared cell settings of _MinCell (expansion, proj_out, scan, time_chunk,
        compile_gates). The gate projection has a bias only when forget_bias is given."""
        super().__init__(dim, bias=forget_bias is not None, **cell_kwargs)
        if forget_bias is not None:
            with torch.no_grad():
                self.to_gates.bias.zero_()
                self.to_gates.bias[: self.hidden_dim].fill_(forget_bias)

    @staticmethod
    def log_coeffs(pre):
        f, i, h_tilde = pre.chunk(3, dim=-1)
        # log f' = log f - log(f + i); with log f = -softplus(-f), log i = -softplus(-i):
        diff = F.softplus(-f) - F.softplus(-i)
        return -F.softplus(diff), -F.softplus(-diff) + log_g(h_tilde)

    @staticmethod
    def coeffs(pre):
        f, i, h_tilde = pre.chunk(3, dim=-1)
        # f' = f / (f + i) = sigmoid(log f - log i): one stable sigmoid, no division.
        diff = F.softplus(-i) - F.softplus(-f)  # log f - log i
        f_norm = torch.sigmoid(diff)
        return f_norm, torch.sigmoid(-diff) * g(h_tilde)
