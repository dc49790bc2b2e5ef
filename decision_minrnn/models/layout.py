"""Token layouts: what differs between DT's three tokens per step and one fused token, in one object each.

* interleaved (DT): (R_t, s_t, a_t) per step, 3K tokens; a_t is predicted from the s_t token, which has seen
  R_<=t, s_<=t and a_<t.
* fused: one token per step, R_t + s_t + a_{t-1} embeddings summed (a_{-1} = 0): 3x shorter sequences. a_t cannot
  be in its own token (it is the target), so the previous action carries the action history.

Each layout builds a training batch's tokens, reads the actions back from the backbone's outputs, and builds the
tokens one environment step adds (what `DecisionModel.act`, the compiled / exported step and the transformer's KV
cache feed); nothing else in the package switches on the layout's name.
"""

from __future__ import annotations

import torch

from ..choices import TOKENS_PER_STEP


class TokenLayout:
    name: str
    # whether envs at an episode's first step and envs further on can share one step call (the first step's
    # tokens must be the same kind as the others')
    mixed_first_steps: bool

    @property
    def tokens_per_step(self) -> int:
        return TOKENS_PER_STEP[self.name]

    def embed(self, model, obs, act, rtg, timesteps, prev_act) -> torch.Tensor:
        """obs (B, K, obs_dim), act (B, K, act_dim), rtg (B, K, 1), timesteps (B, K) -> tokens (B, L, D)."""
        raise NotImplementedError

    def actions(self, model, y: torch.Tensor, K: int) -> torch.Tensor:
        """The backbone's outputs (B, L, D) -> predicted actions (B, K, act_dim)."""
        raise NotImplementedError

    def step_parts(self, model, obs, rtg, timestep, prev_action, prev_timestep) -> tuple[list, list]:
        """The embeddings (N, D) and timesteps (N,) of the tokens one env step adds, in order; prev_action None
        at an episode's first step (no previous action)."""
        raise NotImplementedError

    def traced_step(self, model, obs, rtg, timestep, prev_action, first, state, keep):
        """One env step token by token with a per-env `first` flag (N, 1) instead of branches, for tracing
        (models.step.RecurrentStep: the compiled Policy and the ONNX export). keep(first, old, new) -> the state
        that keeps `old` where first. Returns (the last token's output (N, D), the new state)."""
        raise NotImplementedError

    def window_previous(self, window: dict, idx, pos):
        """(a_{t-1}, its timestep) as a DT window holds them for envs idx at position pos (Policy's window mode),
        so that a KV-cached step embeds exactly what the re-run window embeds."""
        raise NotImplementedError


class Interleaved(TokenLayout):
    name, mixed_first_steps = "interleaved", False  # a first step has no a_{t-1} token

    def embed(self, model, obs, act, rtg, timesteps, prev_act):
        parts = [model.embed_return(rtg), model.embed_state(obs), model.embed_action(act)]  # R_t, s_t, a_t
        return model.tokens(parts, [timesteps] * 3)

    def actions(self, model, y, K):
        return model.predict_action(y.reshape(y.shape[0], K, 3, -1)[:, :, 1])  # the state token of each step

    def step_parts(self, model, obs, rtg, timestep, prev_action, prev_timestep):
        # a_{t-1} closes the previous step, then R_t and s_t; s_t's output predicts the action
        parts, times = [model.embed_return(rtg), model.embed_state(obs)], [timestep, timestep]
        if prev_action is not None:
            parts.insert(0, model.embed_action(prev_action))
            times.insert(0, prev_timestep)
        return parts, times

    def traced_step(self, model, obs, rtg, timestep, prev_action, first, state, keep):
        parts, times = self.step_parts(model, obs, rtg, timestep, prev_action, (timestep - 1).clamp(min=0))
        _, after_action = model.backbone.step(model.token(parts[0], times[0]), state)
        state = keep(first, state, after_action)  # no a_{t-1} at an episode's first step
        for part, t in zip(parts[1:], times[1:]):
            y, state = model.backbone.step(model.token(part, t), state)
        return y, state

    def window_previous(self, window, idx, pos):
        return window["act"][idx, pos - 1], window["timesteps"][idx, pos - 1]


class Fused(TokenLayout):
    name, mixed_first_steps = "fused", True  # a first step's a_{-1} = 0 rides in the same token

    def embed(self, model, obs, act, rtg, timesteps, prev_act):
        if prev_act is None:  # the previous action comes from the data (sampler) or the rollout (Policy)
            raise ValueError("the fused token layout needs the batch's prev_act (the sampler provides it)")
        return model.tokens(
            [model.embed_return(rtg) + model.embed_state(obs) + model.embed_action(prev_act)], [timesteps]
        )

    def actions(self, model, y, K):
        return model.predict_action(y)

    def step_parts(self, model, obs, rtg, timestep, prev_action, prev_timestep):
        prev = obs.new_zeros(obs.shape[0], model.act_dim) if prev_action is None else prev_action  # a_{-1} = 0
        return [model.embed_return(rtg) + model.embed_state(obs) + model.embed_action(prev)], [timestep]

    def traced_step(self, model, obs, rtg, timestep, prev_action, first, state, keep):
        (part,), (t,) = self.step_parts(model, obs, rtg, timestep, prev_action * (1.0 - first), None)
        return model.backbone.step(model.token(part, t), state)

    def window_previous(self, window, idx, pos):
        return window["prev_act"][idx, pos], None


LAYOUTS: dict[str, TokenLayout] = {layout.name: layout for layout in (Interleaved(), Fused())}
