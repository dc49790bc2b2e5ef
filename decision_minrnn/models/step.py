"""The model's O(1) environment step with its state as explicit tensors: what the compiled Policy runs and
what export traces to ONNX. The same math as `DecisionModel.act`, one env step per call; with interleaved
tokens an env step feeds three tokens (a_{t-1}, R_t, s_t), and at an episode's first step (no a_{t-1}) the
step keeps the incoming state where `first` is 1."""

from __future__ import annotations

import torch
from torch import nn


def flatten_state(state) -> list[torch.Tensor]:
    """A backbone state (list of BlockState, or a tensor / (h, c) for torch RNNs) as a flat tensor list."""
    if isinstance(state, torch.Tensor):
        return [state]
    out = []
    for item in state:
        if item is not None:
            out.extend(flatten_state(item))
    return out


def unflatten_state(template, flat: list[torch.Tensor]):
    """The inverse of flatten_state for a state shaped like `template`."""
    it = iter(flat)

    def build(t):
        if isinstance(t, torch.Tensor):
            return next(it)
        parts = [None if x is None else build(x) for x in t]
        return type(t)(*parts) if hasattr(t, "_fields") else type(t)(parts)

    return build(template)


class RecurrentStep(nn.Module):
    """DecisionModel.act with explicit state tensors and a per-env `first` flag, for tracing."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.template = model.initial_state(1)

    def forward(self, obs, rtg, timestep, prev_action, first, *state_flat):
        m = self.model
        state = unflatten_state(self.template, list(state_flat))
        timestep = timestep.clamp(max=m.max_ep_len - 1)
        if m.token_layout == "fused":
            prev = prev_action * (1.0 - first)  # a_{-1} = 0
            y, state = m.backbone.step(
                m.token(m.embed_return(rtg) + m.embed_state(obs) + m.embed_action(prev), timestep), state
            )
        else:
            _, after_action = m.backbone.step(m.token(m.embed_action(prev_action), (timestep - 1).clamp(min=0)), state)
            keep = first > 0.5
            state = unflatten_state(
                self.template,
                [
                    torch.where(
                        keep.view([-1] + [1] * (new.dim() - 1))
                        if m.backbone.state_batch_dim == 0
                        else keep.view([1, -1] + [1] * (new.dim() - 2)),
                        old,
                        new,
                    )
                    for old, new in zip(state_flat, flatten_state(after_action))
                ],
            )
            _, state = m.backbone.step(m.token(m.embed_return(rtg), timestep), state)
            y, state = m.backbone.step(m.token(m.embed_state(obs), timestep), state)
        return (m.predict_action(y), *flatten_state(state))
