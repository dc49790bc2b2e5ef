"""Sequence backbones behind one interface.

    forward(x: (B, L, D), state=None) -> (y: (B, L, D), state)   # whole sequence, parallel where possible
    forward(x, state, last_only=True) -> (y: (B, 1, D), state)   # the same, only the last output (recurrent)
    step(x_t: (B, D), state)          -> (y_t: (B, D), state)    # one token, O(1) (recurrent backbones only)
    initial_state(batch_size, device) -> state
    recurrent: bool                                              # whether step() exists

mingru / minlstm: stacks of residual minRNN blocks (decision_minrnn.nn). gru / lstm: torch.nn's fused
multi-layer RNNs, the classic sequential baselines. transformer: the Decision Transformer's GPT-2 (causal
self-attention, 1 head by default, no positional embedding: DT adds timestep embeddings to the tokens
instead, kzl/decision-transformer gym/decision_transformer/models/trajectory_gpt2.py). The transformer has
no O(1) step: it is evaluated in window mode, as DT is.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..choices import BACKBONE_REGISTRY, BackboneSpec
from ..config import ModelConfig
from ..nn import Dropout, MinRNNStack
from ..nn.dropout import dropout as functional_dropout


class Backbone(Protocol):
    """The interface DecisionModel, Policy, export and the memory of a rollout rely on (see the module doc)."""

    recurrent: bool  # whether step() exists: recurrent evaluation, the compiled Policy and ONNX export need it
    state_batch_dim: int  # the batch dimension of every state tensor (per-episode select / scatter, ONNX)

    def forward(self, x: torch.Tensor, state=None, last_only: bool = False) -> tuple[torch.Tensor, Any]:
        """x: (B, L, D) -> (y: (B, L, D), or (B, 1, D) with last_only; the state after the last token)."""
        ...

    def step(self, x_t: torch.Tensor, state) -> tuple[torch.Tensor, Any]:
        """x_t: (B, D) -> (y_t: (B, D), the next state), O(1) in the sequence length."""
        ...

    def initial_state(self, batch_size: int, device=None) -> Any:
        """The state before an episode's first token (what step and forward start from)."""
        ...


def map_state(fn, *states):
    """Apply fn to the matching tensors of one or more states of the same structure (lists, tuples and
    NamedTuples of tensors; None leaves stay None)."""
    first = states[0]
    if first is None:
        return None
    if isinstance(first, torch.Tensor):
        return fn(*states)
    parts = [map_state(fn, *items) for items in zip(*states)]
    if isinstance(first, tuple) and hasattr(first, "_fields"):  # NamedTuple (BlockState)
        return type(first)(*parts)
    return type(first)(parts)


class MinRNNBackbone(nn.Module):
    recurrent = True
    state_batch_dim = 0  # BlockState tensors are (B, ...)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cell_kwargs = {
            "expansion": cfg.expansion,
            "scan": cfg.scan,
            "compile_gates": cfg.compile_gates,
            "time_chunk": cfg.time_chunk or None,
        }
        if cfg.backbone == "minlstm":
            cell_kwargs["forget_bias"] = cfg.forget_bias
        self.stack = MinRNNStack(
            cfg.embed_dim,
            cfg.n_layers,
            cfg.backbone,
            mlp_ratio=cfg.mlp_ratio,
            dropout=cfg.dropout,
            dropout_impl=cfg.dropout_impl,
            conv_kernel=cfg.conv_kernel,
            **cell_kwargs,
        )

    def forward(self, x, state=None, last_only: bool = False):
        return self.stack(x, state, last_only)

    def step(self, x_t, state):
        return self.stack.step(x_t, state)

    def initial_state(self, batch_size, device=None):
        return self.stack.initial_state(batch_size, device)


class TorchRNNBackbone(nn.Module):
    """torch.nn.GRU / LSTM (oneDNN / cuDNN kernels), with a LayerNorm on the output like the other stacks."""

    recurrent = True
    state_batch_dim = 1  # torch's RNN state is (layers, B, H)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        rnn_class = nn.GRU if cfg.backbone == "gru" else nn.LSTM
        self.kind, self.n_layers, dim = cfg.backbone, cfg.n_layers, cfg.embed_dim
        self.rnn = rnn_class(
            dim, dim, num_layers=cfg.n_layers, batch_first=True, dropout=cfg.dropout if cfg.n_layers > 1 else 0.0
        )
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x, state=None, last_only: bool = False):
        y, state = self.rnn(x, state)
        return self.norm_out(y[:, -1:] if last_only else y), state

    def step(self, x_t, state):
        y, state = self.rnn(x_t.unsqueeze(1), state)
        return self.norm_out(y.squeeze(1)), state

    def initial_state(self, batch_size, device=None):
        h = torch.zeros(self.n_layers, batch_size, self.rnn.hidden_size, device=device)
        return h if self.kind == "gru" else (h, torch.zeros_like(h))


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float, dropout_impl: str = "torch"):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout, self.dropout_impl = dropout, dropout_impl
        self.resid_dropout = Dropout(dropout, dropout_impl)

    def forward(self, x):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        if self.training and self.attn_dropout > 0 and self.dropout_impl != "torch":
            # SDPA draws its attention dropout with torch's generator; this is the same math (SDPA's math
            # path, GPT-2's eager attention) with the mask of nn/dropout.py.
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
            causal = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)
            att = torch.softmax(att.masked_fill(causal, float("-inf")), dim=-1)
            y = functional_dropout(att, self.attn_dropout, True, self.dropout_impl) @ v
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.attn_dropout if self.training else 0.0
            )
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, L, D)))

    def cached(self, x, k_cache, v_cache, pos: int):
        """Acting with a KV cache: x (B, q, D) are the q tokens after the first `pos` of the sequence, whose keys
        and values k_cache / v_cache (B, heads, capacity, D / heads) hold; theirs are written at [pos, pos + q).
        The same numbers as forward over all pos + q tokens, read at the last q (causal: no later token enters).
        Eval only (no dropout)."""
        B, q_len, D = x.shape
        q, k, v = self.qkv(x).view(B, q_len, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        end = pos + q_len
        k_cache[:, :, pos:end] = k.to(k_cache.dtype)
        v_cache[:, :, pos:end] = v.to(v_cache.dtype)
        # new token j (at pos + j) sees keys 0 .. pos + j
        visible = torch.arange(end, device=x.device)[None, :] <= (pos + torch.arange(q_len, device=x.device))[:, None]
        y = F.scaled_dot_product_attention(q, k_cache[:, :, :end], v_cache[:, :, :end], attn_mask=visible)
        return self.proj(y.transpose(1, 2).reshape(B, q_len, D))


class GPTBlock(nn.Module):
    """GPT-2 block: x + attn(ln(x)), x + mlp(ln(x)); DT's config uses ReLU in the 4x MLP."""

    def __init__(self, dim: int, n_heads: int, dropout: float, dropout_impl: str = "torch"):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, n_heads, dropout, dropout_impl)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, dim), Dropout(dropout, dropout_impl)
        )

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))

    def cached(self, x, k_cache, v_cache, pos: int):
        x = x + self.attn.cached(self.ln_1(x), k_cache, v_cache, pos)
        return x + self.mlp(self.ln_2(x))


class TransformerBackbone(nn.Module):
    recurrent = False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim, n_layers = cfg.embed_dim, cfg.n_layers
        self.blocks = nn.ModuleList(GPTBlock(dim, cfg.n_heads, cfg.dropout, cfg.dropout_impl) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(dim)
        self.apply(self._init_weights)
        # GPT-2 scales the init of residual output projections by 1/sqrt(2 * n_layers).
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x, state=None):
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x), None

    def initial_state(self, batch_size, device=None):
        return None

    # ----- acting with a KV cache (window mode while the window has not filled) ----------------------------
    def kv_cache(self, batch_size: int, capacity: int, device=None, dtype=torch.float32) -> list[torch.Tensor]:
        """Empty key/value buffers for `capacity` tokens: [k_0, v_0, k_1, v_1, ...], each (B, heads, capacity,
        D / heads), batch dimension 0."""
        attn = self.blocks[0].attn
        head_dim = attn.qkv.in_features // attn.n_heads
        shape = (batch_size, attn.n_heads, capacity, head_dim)
        return [torch.zeros(shape, device=device, dtype=dtype) for _ in range(2 * len(self.blocks))]

    def forward_cached(self, x, cache: list[torch.Tensor], pos: int):
        """x (B, q, D): the tokens after the `pos` that `cache` holds (written into it) -> their outputs (B, q, D),
        equal to forward over the whole sequence read at its last q positions. O(pos) per call, not O(pos^2)."""
        for i, block in enumerate(self.blocks):
            x = block.cached(x, cache[2 * i], cache[2 * i + 1], pos)
        return self.ln_f(x)


BACKBONE_CLASSES: dict[str, type] = {
    "mingru": MinRNNBackbone,
    "minlstm": MinRNNBackbone,
    "gru": TorchRNNBackbone,
    "lstm": TorchRNNBackbone,
    "transformer": TransformerBackbone,
}
assert set(BACKBONE_CLASSES) == set(BACKBONE_REGISTRY), "every BackboneSpec in choices.py needs its class here"


def register_backbone(name: str, spec: BackboneSpec, cls: type) -> None:
    """Add a backbone: its spec (choices.BACKBONE_REGISTRY: settings, attention) and its class, built as
    cls(model_config). The class must have the `Backbone` protocol's members; config validation, build_model,
    the memory estimate and the reports see it from then on."""
    missing = [m for m in ("recurrent", "forward", "initial_state") if not hasattr(cls, m)]
    if getattr(cls, "recurrent", False):
        missing += [m for m in ("step", "state_batch_dim") if not hasattr(cls, m)]
    if missing:
        raise TypeError(f"backbone {name!r}: {cls.__name__} lacks {', '.join(missing)} (see Backbone)")
    BACKBONE_REGISTRY[name] = spec
    BACKBONE_CLASSES[name] = cls


def unregister_backbone(name: str) -> None:
    """Remove a backbone added by register_backbone (a test's toy one)."""
    BACKBONE_REGISTRY.pop(name, None)
    BACKBONE_CLASSES.pop(name, None)


def build_backbone(cfg: ModelConfig) -> nn.Module:
    if cfg.backbone not in BACKBONE_CLASSES:
        raise ValueError(f"unknown backbone {cfg.backbone!r}; choose one of {', '.join(BACKBONE_CLASSES)}")
    return BACKBONE_CLASSES[cfg.backbone](cfg)
