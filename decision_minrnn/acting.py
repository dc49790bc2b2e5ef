"""How a Policy (policy.py) turns one env step into actions, per mode: the backbone's share of its state.

* RecurrentActor: the backbone state carried from each episode's start, `DecisionModel.step` once per env step
  (O(1)); optionally that same step through torch.compile (models/step.py).
* WindowActor: DT's evaluation (kzl/decision-transformer evaluate_episode_rtg): the last K steps re-run at every
  env step (O(K) tokens, O(K^2) attention); a transformer appends to a KV cache while the window fills.

Both take the same arguments, normalized and on the device: obs (N, obs_dim), rtg (N, 1), timestep (N,) long,
prev_action (N, act_dim) (zeros at an episode's first step), first (N,) bool, and their own state; `restart`
gives envs where keep (N,) is False a fresh state.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch

from .errors import first_line
from .models.step import RecurrentStep, flatten_state, unflatten_state

WINDOW_KEYS = ("obs", "act", "prev_act", "rtg", "timesteps")


@contextmanager
def cpu_threads(n: int, device: torch.device):
    """Acting runs tiny ops (a batch of N envs, one token): on CPU, intra-op threads cost more in fork/join
    than they save (`bench_inference` times 1 and 2 threads; docs/speed.md section 4). A fixed count also makes
    the actions independent of the caller's thread setting."""
    before = torch.get_num_threads()
    if device.type != "cpu" or not n or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pick(keep: torch.Tensor, old: torch.Tensor, new: torch.Tensor, batch_dim: int = 0) -> torch.Tensor:
    """`old` where keep (N,) is True, `new` elsewhere, along old's batch dimension."""
    shape = [1] * old.dim()
    shape[batch_dim] = -1
    return torch.where(keep.view(shape), old, new)


class RecurrentActor:
    """model.step with the backbone state carried from the episode's start: O(1) per env step.

    compile: the same step through torch.compile (models.step.RecurrentStep), which fuses the small ops that
    dominate a batch-1 step (docs/speed.md section 4); actions agree with the eager step to float32 rounding.
    A compiler failure (no C++ compiler...) falls back to the eager step with a warning."""

    mode = "recurrent"

    def __init__(self, model, compile: bool = False):
        self.model = model
        self.compiled = torch.compile(RecurrentStep(model).eval(), dynamic=False) if compile else None
        self._compiled_sizes: set[int] = set()

    def initial(self, n: int, device):
        return self.model.initial_state(n, device)

    def prepare(self, n: int, device, obs_dim: int, act_dim: int) -> None:
        """Compile now, for n envs, with a throwaway step: Policy.reset pays it, not the first act()."""
        if self.compiled is None or n in self._compiled_sizes:
            return
        zeros = torch.zeros(n, device=device)
        self.act(
            torch.zeros(n, obs_dim, device=device),
            zeros.unsqueeze(1),
            zeros.long(),
            torch.zeros(n, act_dim, device=device),
            zeros.bool(),
            self.initial(n, device),
        )
        self._compiled_sizes.add(n)

    def act(self, obs, rtg, timestep, prev_action, first, state):
        if self.compiled is not None:
            try:
                out = self.compiled(obs, rtg, timestep, prev_action, first.float().unsqueeze(1), *flatten_state(state))
                return out[0], unflatten_state(state, list(out[1:]))
            except Exception as exc:  # noqa: BLE001 - any compiler failure: Inductor raises many kinds
                self.compiled = None
                warnings.warn(
                    f"Policy(compile=True): torch.compile failed ({first_line(exc, 200)}); acting eagerly "
                    "(same policy, slower)",
                    RuntimeWarning,
                    stacklevel=4,
                )
        return self.model.step(obs, rtg, timestep, prev_action, first, state)

    def restart(self, state, keep: torch.Tensor):
        return self.model.merge_state(state, self.initial(int(keep.shape[0]), keep.device), keep)


class WindowActor:
    """DT's window: this step (action unknown: zeros) appended to the last K steps, which are re-run from a zero
    state. Windows fill from the left and are read at their last filled step; every backbone is causal, so what
    lies after that step cannot change it.

    kv_cache (transformers): while an episode's window has not filled, each step appends its tokens' keys and
    values to a cache instead of re-running the window (O(K) per step, not O(K^2)); the same numbers, because no
    token leaves the window until it is full. A full window re-runs, as DT does."""

    mode = "window"

    def __init__(self, model, context_len: int, kv_cache: bool = True):
        self.model, self.K = model, context_len
        # the peer DT (scripts/bench_peer_dt.py) has no .backbone and no cache
        self.kv_cache = bool(kv_cache) and hasattr(getattr(model, "backbone", None), "forward_cached")

    def initial(self, n: int, device, buffers: bool = True) -> dict:
        m, K = self.model, self.K
        window = {
            "obs": torch.zeros(n, K, m.obs_dim, device=device),
            "act": torch.zeros(n, K, m.act_dim, device=device),
            "prev_act": torch.zeros(n, K, m.act_dim, device=device),
            "rtg": torch.zeros(n, K, 1, device=device),
            "timesteps": torch.zeros(n, K, dtype=torch.long, device=device),
            "filled": torch.zeros(n, dtype=torch.long, device=device),  # steps in each env's window
        }
        if self.kv_cache and buffers:
            window["kv"] = m.backbone.kv_cache(n, m.layout.tokens_per_step * K, device)
            window["kv_len"] = torch.zeros(n, dtype=torch.long, device=device)  # tokens each env's cache holds
            window["kv_ok"] = torch.ones(n, dtype=torch.bool, device=device)  # False once a window re-ran
        return window

    def prepare(self, n: int, device, obs_dim: int, act_dim: int) -> None:
        pass

    def act(self, obs, rtg, timestep, prev_action, first, state):
        # The window's tensors are copied (a state stays valid after a step); the KV cache is not: it is written
        # in place, so a state that was stepped must not be stepped again.
        w = {k: v if k == "kv" else v.clone() for k, v in state.items()}
        K, n = self.K, obs.shape[0]
        before = w["filled"].clone()
        full = w["filled"] >= K
        if bool(full.any()):  # drop the oldest step of full windows
            for key in WINDOW_KEYS:
                w[key][full] = torch.roll(w[key][full], -1, dims=1)
        pos = w["filled"].clamp(max=K - 1)
        rows = torch.arange(n, device=obs.device)
        w["obs"][rows, pos] = obs
        w["rtg"][rows, pos] = rtg
        w["timesteps"][rows, pos] = timestep
        w["act"][rows, pos] = 0.0
        w["prev_act"][rows, pos] = prev_action  # zeros at an episode's first step
        w["filled"] = pos + 1
        cached = w["kv_ok"] & (before < K) if self.kv_cache else torch.zeros(n, dtype=torch.bool, device=obs.device)
        action = obs.new_zeros(n, self.model.act_dim)
        rerun = (~cached).nonzero().squeeze(1)
        if len(rerun):
            length = int(w["filled"][rerun].max())
            window = {k: w[k][rerun, :length].contiguous() for k in WINDOW_KEYS}
            action[rerun] = self.model(window)[torch.arange(len(rerun), device=obs.device), pos[rerun]]
            if self.kv_cache:
                w["kv_ok"][rerun] = False  # their caches lack this step: they re-run until they restart
        kv_len = w["kv_len"].clone() if self.kv_cache else None  # the groups are fixed before any writes its length
        for start in kv_len[cached].unique().tolist() if bool(cached.any()) else []:
            idx = (cached & (kv_len == start)).nonzero().squeeze(1)
            action[idx] = self._cached_action(w, idx, int(start))
        w["act"][rows, pos] = action
        return action, w

    def _cached_action(self, w: dict, idx: torch.Tensor, start: int) -> torch.Tensor:
        """The action of envs `idx`, whose caches hold `start` tokens, from this step's new tokens alone (the
        window's own entries, so that they equal what a re-run would embed)."""
        m, pos = self.model, w["filled"][idx] - 1
        prev_action, prev_timestep = m.layout.window_previous(w, idx, pos)
        parts, times = m.layout.step_parts(
            m,
            w["obs"][idx, pos],
            w["rtg"][idx, pos],
            w["timesteps"][idx, pos],
            prev_action if start > 0 or m.layout.same_first_step else None,  # an episode's first step
            prev_timestep,
        )
        tokens = m.tokens([p.unsqueeze(1) for p in parts], [t.unsqueeze(1) for t in times])
        whole = len(idx) == w["kv_len"].shape[0]  # every env in this group: use the cache as it is
        cache = w["kv"] if whole else [c.index_select(0, idx) for c in w["kv"]]
        y = m.backbone.forward_cached(tokens, cache, start)
        if not whole:
            for c, sub in zip(w["kv"], cache):
                c.index_copy_(0, idx, sub)
        w["kv_len"][idx] = start + tokens.shape[1]
        return m.predict_action(y[:, -1])

    def restart(self, state: dict, keep: torch.Tensor) -> dict:
        fresh = self.initial(int(keep.shape[0]), keep.device, buffers=False)
        window = {k: _pick(keep, v, fresh[k]) for k, v in state.items() if k in fresh}
        if "kv" in state:  # the buffers stay: a restarted env's kv_len of 0 makes their old contents unread
            window["kv"] = state["kv"]
            window["kv_len"] = torch.where(keep, state["kv_len"], 0)
            window["kv_ok"] = state["kv_ok"] | ~keep
        return window
