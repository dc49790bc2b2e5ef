"""Residual blocks of minRNN cells and a stack of them with a list-of-states interface.

Block (pre-norm, as the GPT-2 blocks of the Decision Transformer and the minGRU language model of
lucidrains/minGRU-pytorch that the paper's ablation components come from):

    x = x + causal_depthwise_conv(x)        (optional, the paper's "Conv" ablation component)
    x = x + dropout(cell(norm(x)))
    x = x + dropout(mlp(norm(x)))           (optional, mlp_ratio > 0)

Depth matters for minRNNs: the gates no longer see h_{t-1}, and stacking layers is what restores
expressivity (paper, section 4: Selective Copying goes from 37.0 with one layer to 99.5 with three).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .cells import MinGRU, MinLSTM
from .dropout import Dropout
from .mlp import GeluMLP

CELLS = {"mingru": MinGRU, "minlstm": MinLSTM}


class BlockState(NamedTuple):
    """Recurrent state of one block: the cell state (B, H) and the last kernel-1 conv inputs (B, k-1, D)."""

    h: torch.Tensor
    conv: torch.Tensor | None


class CausalDepthwiseConv(nn.Module):
    """Depthwise Conv1d over time that only sees the current and the previous kernel-1 steps."""

    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(dim, dim, kernel_size, groups=dim)

    def forward(self, x: torch.Tensor, buffer: torch.Tensor | None):
        """x: (B, T, D), buffer: (B, k-1, D) of earlier inputs or None (zeros) -> (y, new buffer)."""
        if buffer is None:
            buffer = x.new_zeros(x.shape[0], self.kernel_size - 1, x.shape[2])
        x_in = torch.cat([buffer.to(x.dtype), x], dim=1)
        y = self.conv(x_in.transpose(1, 2)).transpose(1, 2)
        return y, x_in[:, x_in.shape[1] - (self.kernel_size - 1) :]


class ResidualBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        cell: str = "mingru",
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        conv_kernel: int = 0,
        dropout_impl: str = "torch",
        **cell_kwargs,
    ):
        """cell_kwargs go to the cell unchanged (expansion, scan, time_chunk, compile_gates; forget_bias for
        minLSTM), so a new cell setting needs no change here."""
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
        self.conv = CausalDepthwiseConv(dim, conv_kernel) if conv_kernel > 1 else None
        self.norm_cell = nn.LayerNorm(dim)
        self.cell = CELLS[cell](dim, **cell_kwargs)
        self.mlp = None
        if mlp_ratio > 0:
            hidden = int(dim * mlp_ratio)
            self.norm_mlp = nn.LayerNorm(dim)
            self.mlp = GeluMLP(dim, hidden)
        self.dropout = Dropout(dropout, dropout_impl)

    def _conv_and_cell(self, x, state: BlockState | None, cell_fn, last_only: bool = False):
        h, buffer = (None, None) if state is None else state
        new_buffer = None
        if self.conv is not None:
            conv_out, new_buffer = self.conv(x, buffer)
            x = x + conv_out
        y, h = cell_fn(self.norm_cell(x), h)
        x = x + self.dropout(y)
        if last_only:  # the state has seen every step; what follows is per token, so only the last one is kept
            x = x[:, -1:]
        if self.mlp is not None:
            x = x + self.dropout(self.mlp(self.norm_mlp(x)))
        return x, BlockState(h, new_buffer)

    def forward(self, x: torch.Tensor, state: BlockState | None = None, last_only: bool = False):
        """x: (B, T, D) -> (y: (B, T, D), or (B, 1, D) of the last step with last_only, BlockState)."""
        return self._conv_and_cell(x, state, self.cell, last_only)

    def step(self, x_t: torch.Tensor, state: BlockState | None = None):
        """x_t: (B, D) -> (y_t: (B, D), BlockState)."""
        if self.conv is None:
            y, new_state = self._conv_and_cell(x_t, state, self.cell.step)
            return y, new_state
        # The conv needs a time axis; a length-1 sequence through the same code path keeps the math identical.
        y, new_state = self._conv_and_cell(x_t.unsqueeze(1), state, self._cell_step_seq)
        return y.squeeze(1), new_state

    def _cell_step_seq(self, x, h):
        y, h = self.cell.step(x.squeeze(1), h)
        return y.unsqueeze(1), h

    def initial_state(self, batch_size: int, device=None) -> BlockState:
        h = self.cell.initial_state(batch_size, device=device)
        conv = None
        if self.conv is not None:
            conv = torch.zeros(batch_size, self.conv.kernel_size - 1, self.cell.dim, device=device)
        return BlockState(h, conv)


class MinRNNStack(nn.Module):
    """N residual blocks and a final LayerNorm; state is a list with one BlockState per block."""

    def __init__(self, dim: int, depth: int, cell: str = "mingru", **block_kwargs):
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.blocks = nn.ModuleList(ResidualBlock(dim, cell, **block_kwargs) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, state: list[BlockState] | None = None, last_only: bool = False):
        """x: (B, T, D), state: list of BlockState or None -> (y: (B, T, D), new state list).
        last_only: y is (B, 1, D), the last step's output only (the same numbers), and the last block's MLP
        runs on that step alone: what an acting caller that feeds several tokens per env step needs."""
        new_state = []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x, s = block(x, None if state is None else state[i], last_only and i == last)
            new_state.append(s)
        return self.norm_out(x), new_state

    def step(self, x_t: torch.Tensor, state: list[BlockState] | None = None):
        """x_t: (B, D) -> (y_t: (B, D), new state list). O(1) in the sequence length."""
        new_state = []
        for i, block in enumerate(self.blocks):
            x_t, s = block.step(x_t, None if state is None else state[i])
            new_state.append(s)
        return self.norm_out(x_t), new_state

    def initial_state(self, batch_size: int, device=None) -> list[BlockState]:
        return [block.initial_state(batch_size, device) for block in self.blocks]
