"""DecisionModel.step with its state as a flat list of tensors and `first` as a float (N, 1): the signature
torch.compile (the compiled Policy) and the ONNX export trace. The math is DecisionModel.step's own, so every
acting path gives the same numbers by construction."""

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
    """forward(obs, rtg, timestep, prev_action, first (N, 1) float, *state tensors) -> (action, *state tensors)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.template = model.initial_state(1)

    def forward(self, obs, rtg, timestep, prev_action, first, *state_flat):
        state = unflatten_state(self.template, list(state_flat))
        action, state = self.model.step(obs, rtg, timestep, prev_action, first.view(-1) > 0.5, state)
        # contiguous, as initial_state's are: a state that is a view (the last step of a scan's output) has other
        # strides, and the compiled step would compile a second graph for the steps after an episode's first
        return (action, *[s.contiguous() for s in flatten_state(state)])
