"""The model's O(1) environment step with its state as explicit tensors: what the compiled Policy runs and
what export traces to ONNX. The same math as `DecisionModel.act`, one env step per call, token by token
(models/layout.py, `traced_step`): with interleaved tokens an env step feeds three (a_{t-1}, R_t, s_t), and at an
episode's first step (no a_{t-1}) the step keeps the incoming state where `first` is 1."""

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
        y, state = m.layout.traced_step(m, obs, rtg, timestep, prev_action, first, state, self._keep)
        return (m.predict_action(y), *flatten_state(state))

    def _keep(self, first, old, new):
        """The state `old` where first (N, 1) is 1, `new` elsewhere (DecisionModel.merge_state's torch.where)."""
        return self.model.merge_state(old, new, first.view(-1) > 0.5)
