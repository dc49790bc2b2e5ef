"""A trained policy for raw observations: everything a rollout needs besides the environment.

    policy = load_policy("runs/quickstart")            # target: the run's first target return
    policy.reset()                                      # one episode (reset(n) for N at once)
    obs, _ = env.reset(seed=0)
    reward = None
    while True:
        action = policy.act(obs, reward)                # the previous step's reward lowers return-to-go
        obs, reward, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break

The Policy owns the observation normalization, the return-to-go (target minus rewards so far, divided by
rtg_scale, as DT conditions), the timestep, the previous action and the backbone state: the recurrent state
(O(1) per step) or, in window mode, the last K steps that DT re-runs at every step (O(K)). It is what
`decision-minrnn evaluate` rolls out, so a loop like the one above reaches the returns `evaluate` reports.
Like d3rlpy's `StatefulWrapper` it is stateful; `predict` gives Stable-Baselines3's signature on top.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .choices import POLICY_MODES
from .data.normalization import ObsNormalizer
from .envs.make import action_bounds
from .errors import DivergedError, UsageError, first_line
from .models.step import RecurrentStep, flatten_state, unflatten_state
from .runs import PolicyContext, eval_targets, model_from_checkpoint, policy_context
from .views import ObservationView, ViewStream


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


@dataclass
class PolicyState:
    """Per-env bookkeeping of N episodes. rtg (N, 1) scaled; t (N,) steps taken; prev_action (N, act_dim)
    (zeros before the first step); backbone: the recurrent state (recurrent mode) or the K-step window
    (window mode: tensors (N, K, ...) filled from the left, `filled` (N,) steps in it); view: what the
    observation view carries between steps (flicker's last observed frame, each episode's drops)."""

    rtg: torch.Tensor
    t: torch.Tensor
    prev_action: torch.Tensor
    backbone: object
    view: ViewStream | None = None  # the observation view's per-episode state (flicker's last frame and drops)


class Policy:
    """A DecisionModel with its normalizer and return-to-go bookkeeping, acting on raw observations."""

    def __init__(
        self,
        model,
        obs_norm: ObsNormalizer,
        rtg_scale: float,
        context_len: int,
        target_return: float,
        mode: str = "auto",
        device: torch.device | str = "cpu",
        action_low=None,
        action_high=None,
        env_id: str | None = None,
        targets: list[float] | None = None,
        threads: int = 1,
        compile: bool = False,
        view: ObservationView | None = None,
        kv_cache: bool = True,
    ):
        if mode not in POLICY_MODES:
            raise UsageError(f"mode={mode!r} is not one of {', '.join(POLICY_MODES)}")
        if mode == "auto":
            mode = "recurrent" if model.recurrent else "window"
        if mode == "recurrent" and not model.recurrent:
            raise UsageError(f"the {model.backbone_name} backbone cannot step recurrently; use mode='window'")
        check_target(target_return)
        self.model = model.eval()
        self.device = torch.device(device)
        self.mode, self.context_len, self.rtg_scale = mode, context_len, rtg_scale
        self.target_return, self.targets, self.env_id = float(target_return), targets, env_id
        self.threads = threads  # torch CPU threads while acting (0: leave the caller's setting)
        self.obs_dim, self.act_dim = model.obs_dim, model.act_dim
        # The policy takes the env's full observations and shows the model its view of them (views.py).
        self.view = view if view is not None else ObservationView("full", model.obs_dim)
        if self.view.obs_dim != self.obs_dim:
            raise UsageError(f"the {self.view.name} view gives {self.view.obs_dim} dims; model: {model.obs_dim}")
        self.env_obs_dim = self.view.env_obs_dim
        self.obs_norm = obs_norm
        self._mean = torch.as_tensor(obs_norm.mean, device=self.device)
        self._std = torch.as_tensor(obs_norm.std, device=self.device)
        self._low = None if action_low is None else torch.as_tensor(action_low, dtype=torch.float32, device=self.device)
        self._high = (
            None if action_high is None else torch.as_tensor(action_high, dtype=torch.float32, device=self.device)
        )
        self.state: PolicyState | None = None
        # Window mode of a transformer: while an episode's window has not filled, each step appends its tokens'
        # keys and values to a cache instead of re-running the window (O(K) per step, not O(K^2)); the same
        # numbers, because no token leaves the window until it is full. A full window re-runs, as DT does.
        cacheable = hasattr(getattr(model, "backbone", None), "forward_cached")  # the peer DT has no .backbone
        self.kv_cache = bool(kv_cache) and mode == "window" and cacheable
        # compile: the recurrent step (models.step.RecurrentStep: the same math token by token, with the state as
        # flat tensors) through torch.compile, which fuses the small ops that dominate a batch-1 step
        # (docs/speed.md section 4). Actions agree with the eager path to float32 rounding, not bit for bit.
        self._compiled, self._compiled_sizes = None, set()
        if compile and mode == "recurrent":
            self._compiled = torch.compile(RecurrentStep(model).eval(), dynamic=False)

    @classmethod
    def from_context(
        cls,
        model,
        ctx: PolicyContext,
        target_return: float,
        mode: str = "auto",
        device: torch.device | str = "cpu",
        action_bounds: tuple | None = None,
        targets: list[float] | None = None,
        threads: int = 1,
        compile: bool = False,
    ) -> Policy:
        """The policy of a run (runs.policy_context: its normalizer, return scale, context length and env).
        action_bounds: (low, high) to clip actions to, or None."""
        low, high = action_bounds if action_bounds is not None else (None, None)
        return cls(
            model,
            ctx.obs_norm,
            ctx.rtg_scale,
            ctx.context_len,
            target_return,
            mode=mode,
            device=device,
            action_low=low,
            action_high=high,
            env_id=ctx.env_id,
            targets=targets,
            threads=threads,
            compile=compile,
            view=ctx.view,
        )

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        target_return: float | None = None,
        mode: str = "auto",
        device: torch.device | str = "cpu",
        clip_to_env: bool = True,
        compile: bool = False,
        threads: int = 1,
    ) -> Policy:
        """The policy of a run directory's newest checkpoint (or of a checkpoint directory).

        target_return: raw return to condition on; default the run's first evaluation target (DT's higher one).
        mode: auto (recurrent when the backbone can step, else window) | recurrent | window.
        clip_to_env: clip actions to the action space of the run's environment (made once to read it).
        compile: torch.compile the recurrent step (a few seconds once, then a faster step; needs a C++ compiler
        on CPU, falls back to eager with a warning). threads: torch CPU threads while acting (0: the caller's)."""
        _, cfg, data, model = model_from_checkpoint(run_dir, device)
        ctx = policy_context(cfg, data)
        targets = eval_targets(cfg, data)
        return cls.from_context(
            model,
            ctx,
            targets[0] if target_return is None else target_return,
            mode=mode,
            device=device,
            action_bounds=action_bounds(ctx.env_id) if clip_to_env else None,
            targets=targets,
            threads=threads,
            compile=compile,
        )

    # ----- the stateful API ----------------------------------------------------------------------------
    def reset(self, n: int = 1, target_return: float | None = None, seeds=None) -> None:
        """Start n episodes, conditioned on target_return (raw; default: the policy's). seeds: the seeds the
        n environments were reset with, which a flicker view draws each episode's dropped frames from, as
        `evaluate` does (default 0..n-1); other views ignore them."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise UsageError(f"reset(n={n!r}): n must be an integer >= 1 (the number of episodes)")
        target = self.target_return if target_return is None else check_target(target_return)
        self.state = self.initial_state(n, target, seeds)
        if self._compiled is not None and n not in self._compiled_sizes:
            # Compile now, for this batch size, with a throwaway step: reset() pays it, not the first act().
            with torch.inference_mode(), cpu_threads(self.threads, self.device):
                self._recurrent_action(
                    torch.zeros(n, self.obs_dim, device=self.device), self.state.rtg, self.state.t, self.state
                )
            self._compiled_sizes.add(n)

    @torch.inference_mode()
    def act(self, obs, reward=None) -> np.ndarray:
        """obs: one raw observation (obs_dim,) or a batch (N, obs_dim); reward: the reward each env received
        for the previous action (None at an episode's first step). Returns the action(s), clipped to the
        action space when it is known, with the shape of the input's batch."""
        single = np.ndim(obs) == 1
        obs = self._check_obs(obs)
        if self.state is None or self.state.rtg.shape[0] != obs.shape[0]:
            if self.state is not None and reward is not None:
                raise UsageError(
                    f"act() got {obs.shape[0]} observations but reset() started {self.state.rtg.shape[0]} episodes"
                )
            self.reset(obs.shape[0])
        with cpu_threads(self.threads, self.device):
            action, self.state = self.step(self._viewed(obs, self.state), reward, self.state)
        action = action.float().cpu().numpy()
        return action[0] if single else action

    def predict(
        self, obs, state: PolicyState | None = None, episode_start=None, deterministic: bool = True, reward=None
    ):
        """Stable-Baselines3's signature: returns (action, state). state None starts new episodes;
        episode_start (N,) bool restarts those envs (return-to-go, timestep, history, backbone state).
        Stable-Baselines3 passes no rewards; give `reward` to lower the return-to-go as DT does, or the
        policy stays conditioned on the full target. The policy is deterministic: `deterministic` is
        accepted for compatibility only."""
        single = np.ndim(obs) == 1
        obs = self._check_obs(obs)
        with torch.inference_mode(), cpu_threads(self.threads, self.device):
            if state is None:
                state = self.initial_state(obs.shape[0], self.target_return)
            elif state.rtg.shape[0] != obs.shape[0]:
                raise UsageError(f"predict() got {obs.shape[0]} observations for a state of {state.rtg.shape[0]} envs")
            if episode_start is not None:
                flags = np.asarray(episode_start)
                if flags.size != obs.shape[0] or not (flags.dtype == bool or np.issubdtype(flags.dtype, np.integer)):
                    raise UsageError(
                        f"episode_start must hold {obs.shape[0]} booleans (one per observation), got {flags.tolist()!r}"
                    )
                starts = torch.as_tensor(flags.astype(bool).reshape(-1), device=self.device)
                if starts.any():
                    state = self._restart(state, starts)
                    if reward is not None:  # a new episode has no previous reward
                        reward = np.where(starts.cpu().numpy(), 0.0, np.asarray(reward, dtype=np.float64).reshape(-1))
            action, state = self.step(self._viewed(obs, state), reward, state)
        action = action.float().cpu().numpy()
        return (action[0] if single else action), state

    # ----- one step, functional ------------------------------------------------------------------------
    def initial_state(self, n: int, target_return: float, seeds=None, _buffers: bool = True) -> PolicyState:
        d = self.device
        seeds = list(range(n)) if seeds is None else list(seeds)
        if len(seeds) != n:
            raise UsageError(f"{len(seeds)} seeds for {n} episodes")
        view = None if self.view.name == "full" else self.view.start(n, seeds)
        rtg = torch.full((n, 1), target_return / self.rtg_scale, device=d)
        prev = torch.zeros(n, self.act_dim, device=d)
        if self.mode == "recurrent":
            backbone = self.model.initial_state(n, d)
        else:
            K = self.context_len
            backbone = {
                "obs": torch.zeros(n, K, self.obs_dim, device=d),
                "act": torch.zeros(n, K, self.act_dim, device=d),
                "prev_act": torch.zeros(n, K, self.act_dim, device=d),
                "rtg": torch.zeros(n, K, 1, device=d),
                "timesteps": torch.zeros(n, K, dtype=torch.long, device=d),
                "filled": torch.zeros(n, dtype=torch.long, device=d),
            }
            if self.kv_cache and _buffers:
                backbone["kv"] = self.model.backbone.kv_cache(n, self.model.layout.tokens_per_step * K, d)
                backbone["kv_len"] = torch.zeros(n, dtype=torch.long, device=d)  # tokens each env's cache holds
                backbone["kv_ok"] = torch.ones(n, dtype=torch.bool, device=d)  # False once a window re-ran
        return PolicyState(rtg, torch.zeros(n, dtype=torch.long, device=d), prev, backbone, view)

    def _viewed(self, obs: np.ndarray, state: PolicyState) -> torch.Tensor:
        """The env's observations (N, env_obs_dim) as the model's view of them (N, obs_dim), on the device."""
        if state.view is not None:
            obs = state.view.step(obs, state.t.cpu().numpy())
        return torch.as_tensor(np.ascontiguousarray(obs, dtype=np.float32), device=self.device)

    def step(self, obs: torch.Tensor, reward, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        """obs (N, obs_dim) raw float32 on the device, already in the policy's view (act and predict apply it);
        reward (N,) or None -> (action (N, act_dim), new state)."""
        obs_t = (obs - self._mean) / self._std
        rtg = state.rtg
        if reward is not None:
            reward = torch.as_tensor(
                np.asarray(reward, dtype=np.float64).reshape(-1), dtype=torch.float32, device=self.device
            )
            if reward.shape[0] != rtg.shape[0] or not torch.isfinite(reward).all():
                raise UsageError(f"reward must hold {rtg.shape[0]} finite values")
            # RTG_{t+1} = RTG_t - r_t / scale (DT)
            rtg = rtg - reward.unsqueeze(1) / self.rtg_scale
        timestep = state.t.clamp(max=self.model.max_ep_len - 1)
        if self.mode == "recurrent":
            action, backbone = self._recurrent_action(obs_t, rtg, timestep, state)
        else:
            action, backbone = self._window_action(obs_t, rtg, timestep, state)
        if not bool(torch.isfinite(action).all()):
            raise DivergedError("the policy produced a non-finite action (NaN or inf weights or inputs?)")
        if self._low is not None:
            action = torch.maximum(torch.minimum(action, self._high), self._low)
        return action, PolicyState(rtg, state.t + 1, action, backbone, state.view)

    def _recurrent_action(self, obs_t, rtg, timestep, state):
        first = state.t == 0
        if self._compiled is not None:
            action = self._compiled_action(obs_t, rtg, timestep, state, first)
            if action is not None:
                return action
        if bool(first.all()):
            return self.model.act(obs_t, rtg, timestep, None, state.backbone)
        if not bool(first.any()) or self.model.layout.mixed_first_steps:
            # fused: a first step's previous action is zeros, which prev_action already holds after a restart
            return self.model.act(obs_t, rtg, timestep, state.prev_action, state.backbone)
        # Interleaved, some envs at their first step (no previous-action token) and some not: two calls.
        action = obs_t.new_zeros(obs_t.shape[0], self.act_dim)
        backbone = state.backbone
        for group, prev in ((first, None), (~first, state.prev_action)):
            idx = group.nonzero().squeeze(1)
            sub_state = self.model.select_state(state.backbone, idx)
            a, s = self.model.act(obs_t[idx], rtg[idx], timestep[idx], None if prev is None else prev[idx], sub_state)
            action[idx] = a
            backbone = self.model.scatter_state(backbone, idx, s)
        return action, backbone

    def _compiled_action(self, obs_t, rtg, timestep, state, first):
        try:
            out = self._compiled(
                obs_t, rtg, timestep, state.prev_action, first.float().unsqueeze(1), *flatten_state(state.backbone)
            )
        except Exception as exc:  # noqa: BLE001 - any compiler failure (no C++ compiler...): Inductor raises many kinds
            self._compiled = None
            warnings.warn(
                f"Policy(compile=True): torch.compile failed ({first_line(exc, 200)}); acting eagerly "
                "(same policy, slower)",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        return out[0], unflatten_state(state.backbone, list(out[1:]))

    def _window_action(self, obs_t, rtg, timestep, state):
        """DT's evaluation (kzl/decision-transformer evaluate_episode_rtg): append this step (action unknown:
        zeros) to the last K steps and re-run them from a zero state. Windows are filled from the left and
        read at their last filled step; every backbone is causal, so what lies after it cannot change it."""
        # The window's tensors are copied (a PolicyState stays valid after a step); the KV cache is not: it is
        # written in place, so a state that was stepped must not be stepped again.
        w = {k: v if k == "kv" else v.clone() for k, v in state.backbone.items()}
        K, n = self.context_len, obs_t.shape[0]
        before = w["filled"].clone()
        full = w["filled"] >= K
        if bool(full.any()):  # drop the oldest step of full windows
            for key in ("obs", "act", "prev_act", "rtg", "timesteps"):
                w[key][full] = torch.roll(w[key][full], -1, dims=1)
        pos = w["filled"].clamp(max=K - 1)
        rows = torch.arange(n, device=obs_t.device)
        w["obs"][rows, pos] = obs_t
        w["rtg"][rows, pos] = rtg
        w["timesteps"][rows, pos] = timestep
        w["act"][rows, pos] = 0.0
        w["prev_act"][rows, pos] = state.prev_action  # zeros at an episode's first step
        w["filled"] = pos + 1
        cached = w["kv_ok"] & (before < K) if self.kv_cache else torch.zeros(n, dtype=torch.bool, device=obs_t.device)
        action = obs_t.new_zeros(n, self.act_dim)
        rerun = (~cached).nonzero().squeeze(1)
        if len(rerun):
            length = int(w["filled"][rerun].max())
            window = {k: w[k][rerun, :length].contiguous() for k in ("obs", "act", "prev_act", "rtg", "timesteps")}
            action[rerun] = self.model(window)[torch.arange(len(rerun), device=obs_t.device), pos[rerun]]
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
            prev_action if start > 0 or m.layout.mixed_first_steps else None,  # an episode's first step
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

    def _restart(self, state: PolicyState, starts: torch.Tensor) -> PolicyState:
        fresh = self.initial_state(int(starts.shape[0]), self.target_return, _buffers=False)
        keep = ~starts

        def pick(old, new, batch_dim=0):
            shape = [1] * old.dim()
            shape[batch_dim] = -1
            return torch.where(keep.view(shape), old, new)

        if self.mode == "recurrent":
            backbone = self.model.merge_state(state.backbone, fresh.backbone, keep)
        else:
            # the KV buffers stay: a restarted env's kv_len of 0 makes their old contents unread
            backbone = {k: pick(v, fresh.backbone[k]) for k, v in state.backbone.items() if k in fresh.backbone}
            if "kv" in state.backbone:
                backbone["kv"] = state.backbone["kv"]
                backbone["kv_len"] = torch.where(keep, state.backbone["kv_len"], 0)
                backbone["kv_ok"] = state.backbone["kv_ok"] | starts
        if state.view is not None:  # a restarted env draws its next episode's drops from its seed + n
            index = starts.nonzero().squeeze(1).cpu().numpy()
            state.view.restart(index, [state.view.seeds[i] + len(starts) for i in index])
        return PolicyState(
            pick(state.rtg, fresh.rtg),
            pick(state.t, fresh.t),
            pick(state.prev_action, fresh.prev_action),
            backbone,
            state.view,
        )

    def _check_obs(self, obs) -> np.ndarray:
        """The env's observations as (N, env_obs_dim) float32; anything else is a UsageError."""
        array = np.asarray(obs, dtype=np.float32)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[1] != self.env_obs_dim:
            seen = "" if self.view.name == "full" else f" (whole; we take the {self.view.name} view)"
            raise UsageError(
                f"observation of shape {np.shape(obs)} does not fit the policy's obs_dim "
                f"{self.env_obs_dim}{seen}: pass (obs_dim,) or (N, obs_dim)"
            )
        if not np.isfinite(array).all():
            raise UsageError("observation contains NaN or inf")
        return array


def check_target(target_return) -> float:
    value = float(target_return)
    if not np.isfinite(value):
        raise UsageError(f"target return {target_return} is not finite")
    return value


# The policy of a run directory's newest checkpoint (or of a checkpoint directory); see Policy.from_run.
load_policy = Policy.from_run
