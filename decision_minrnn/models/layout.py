"""Token layouts: what differs between DT's three tokens per step and one fused token, in one object each.

* interleaved (DT): (R_t, s_t, a_t) per step, 3K tokens; a_t is predicted from the s_t token, which has seen
  R_<=t, s_<=t and a_<t.
* fused: one token per step, R_t + s_t + a_{t-1} embeddings summed (a_{-1} = 0): 3x shorter sequences. a_t cannot
  be in its own token (it is the target), so the previous action carries the action history.

Each layout builds a training batch's tokens, reads the actions back from the backbone's outputs, and builds the
tokens one environment step adds and steps the backbone through them (`step`: what `DecisionModel.step` runs for
Policy, the compiled step and the ONNX export; `step_parts` also feeds the transformer's KV cache); nothing else
in the package switches on the layout's name.
"""

from __future__ import annotations

import torch

from ..choices import TOKENS_PER_STEP


def _none_first(first: torch.Tensor) -> bool:
    """Whether no env in `first` starts an episode, where that can be read: never while torch.compile or the ONNX
    export traces the step (then the masked path serves every case)."""
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
        return False
    return not bool(first.any())


class TokenLayout:
    name: str
    # whether an episode's first step adds as many tokens as the steps after it (the KV cache's count)
    same_first_step: bool

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

    def step(self, model, obs, rtg, timestep, prev_action, first, state):
        """One env step's tokens through the backbone with the carried state (O(1) in the episode's length), for N
        envs; first (N,) bool marks an episode's first step, masked rather than branched on where the step is
        traced. Returns (the last token's output (N, D), the new state)."""
        raise NotImplementedError

    def window_previous(self, window: dict, idx, pos):
        """(a_{t-1}, its timestep) as a DT window holds them for envs idx at position pos (Policy's window mode),
        so that a KV-cached step embeds exactly what the re-run window embeds."""
        raise NotImplementedError


class Interleaved(TokenLayout):
    name, same_first_step = "interleaved", False  # a first step has no a_{t-1} token

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

    def step(self, model, obs, rtg, timestep, prev_action, first, state):
        parts, times = self.step_parts(model, obs, rtg, timestep, prev_action, (timestep - 1).clamp(min=0))
        if _none_first(first):
            # Every step of an episode but its first: the three tokens as one sequence continuing the state,
            # the same math as a step() each (a minRNN's gates do not read h; forward with a state is tested
            # equal to stepping) at a third of the op launches (docs/speed.md section 4).
            start = 0
        else:  # a_{t-1} alone, so that envs at their first step keep the state it would have moved
            _, after_action = model.backbone.step(model.token(parts[0], times[0]), state)
            state = model.merge_state(state, after_action, first)
            start = 1
        tokens = model.tokens([p.unsqueeze(1) for p in parts[start:]], [t.unsqueeze(1) for t in times[start:]])
        y, state = model.backbone(tokens, state, last_only=True)  # only s_t's output predicts the action
        return y[:, -1], state

    def window_previous(self, window, idx, pos):
        return window["act"][idx, pos - 1], window["timesteps"][idx, pos - 1]


class Fused(TokenLayout):
    name, same_first_step = "fused", True  # a first step's a_{-1} = 0 rides in the same token

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

    def step(self, model, obs, rtg, timestep, prev_action, first, state):
        prev = torch.where(first.unsqueeze(1), torch.zeros_like(prev_action), prev_action)  # a_{-1} = 0
        (part,), (t,) = self.step_parts(model, obs, rtg, timestep, prev, None)
        return model.backbone.step(model.token(part, t), state)

    def window_previous(self, window, idx, pos):
        return window["prev_act"][idx, pos], None


LAYOUTS: dict[str, TokenLayout] = {layout.name: layout for layout in (Interleaved(), Fused())}
