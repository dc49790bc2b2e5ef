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

The Policy owns the observation view and normalization, the return-to-go (target minus rewards so far, divided
by rtg_scale, as DT conditions), the timestep, the previous action and the clipping to the action space; its
actor (acting.py) owns the backbone's state: the recurrent state (O(1) per step) or, in window mode, the last K
steps that DT re-runs at every step (O(K)). It is what `decision-minrnn evaluate` rolls out, so a loop like the
one above reaches the returns `evaluate` reports.
Like d3rlpy's `StatefulWrapper` it is stateful; `predict` gives Stable-Baselines3's signature on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .acting import RecurrentActor, WindowActor, cpu_threads
from .choices import POLICY_MODES
from .data.info import DataInfo
from .envs.make import action_bounds
from .errors import DivergedError, EnvError, UsageError
from .policy_inputs import (
    check_episode_count,
    check_episode_starts,
    check_observations,
    check_rewards,
    check_same_batch,
    check_target_return,
)
from .runs import acting_window, env_of, eval_targets, model_from_checkpoint
from .views import ViewStream


@dataclass
class PolicyState:
    """Per-env bookkeeping of N episodes. rtg (N, 1) scaled; t (N,) steps taken; prev_action (N, act_dim)
    (zeros before the first step); backbone: the actor's state (acting.py: the recurrent state, or the K-step
    window); view: what the observation view carries between steps (flicker's last frame and drops)."""

    rtg: torch.Tensor
    t: torch.Tensor
    prev_action: torch.Tensor
    backbone: object
    view: ViewStream | None = None


class Policy:
    """A DecisionModel acting on an env's raw observations, with what its run's data block (DataInfo) says:
    the observation view and normalizer, the env (whose action space clips the actions with clip_to_env), the
    reference scores. Policy.from_run and Policy.for_run read rtg_scale and context_len from the run's config.

    mode: auto (recurrent when the backbone can step, else window) | recurrent | window. compile: torch.compile
    the recurrent step. threads: torch CPU threads while acting (0: the caller's). kv_cache: a transformer's
    window mode appends to a KV cache while the window fills (acting.WindowActor)."""

    def __init__(
        self,
        model,
        data: DataInfo,
        target_return: float,
        *,
        rtg_scale: float = 1000.0,
        context_len: int = 20,
        mode: str = "auto",
        device: torch.device | str = "cpu",
        clip_to_env: bool = False,
        targets: list[float] | None = None,
        threads: int = 1,
        compile: bool = False,
        kv_cache: bool = True,
    ):
        if mode not in POLICY_MODES:
            raise UsageError(f"mode={mode!r} is not one of {', '.join(POLICY_MODES)}")
        if mode == "auto":
            mode = "recurrent" if model.recurrent else "window"
        if mode == "recurrent" and not model.recurrent:
            raise UsageError(f"the {model.backbone_name} backbone cannot step recurrently; use mode='window'")
        if data.view.obs_dim != model.obs_dim:
            raise UsageError(f"the {data.view.name} view gives {data.view.obs_dim} dims; model: {model.obs_dim}")
        if clip_to_env and not data.env_id:
            raise EnvError("the run's dataset names no environment to clip actions to; set data.env_id")
        self.model, self.data = model.eval(), data
        self.device = torch.device(device)
        self.mode, self.context_len, self.rtg_scale = mode, context_len, rtg_scale
        self.target_return, self.targets = check_target_return(target_return, UsageError), targets
        self.threads = threads
        self.env_id, self.view, self.obs_norm = data.env_id, data.view, data.obs_norm
        self.obs_dim, self.act_dim, self.env_obs_dim = model.obs_dim, model.act_dim, data.view.env_obs_dim
        self._mean = torch.as_tensor(data.obs_norm.mean, device=self.device)
        self._std = torch.as_tensor(data.obs_norm.std, device=self.device)
        bounds = action_bounds(data.env_id) if clip_to_env else None
        self._bounds = None if bounds is None else [torch.as_tensor(b, device=self.device) for b in bounds]
        if mode == "recurrent":
            self.actor = RecurrentActor(model, compile)
        else:
            self.actor = WindowActor(model, context_len, kv_cache)
        self.kv_cache = getattr(self.actor, "kv_cache", False)
        self.state: PolicyState | None = None

    @classmethod
    def for_run(cls, model, cfg, data: DataInfo, target_return: float | None = None, **kwargs) -> Policy:
        """The policy of a run's model, config and data block; target_return: default the run's first target
        (DT's higher one). kwargs: the constructor's (mode, device, clip_to_env (default True), ...)."""
        env_of(data)
        targets = eval_targets(cfg, data)
        kwargs.setdefault("clip_to_env", True)
        return cls(
            model,
            data,
            targets[0] if target_return is None else target_return,
            rtg_scale=cfg.data.rtg_scale,
            context_len=acting_window(cfg),
            targets=targets,
            **kwargs,
        )

    @classmethod
    def from_run(cls, run_dir: str | Path, target_return: float | None = None, device="cpu", **kwargs) -> Policy:
        """The policy of a run directory's newest checkpoint (or of a checkpoint directory), as for_run builds it:
        Policy.from_run("runs/quickstart", mode="recurrent", compile=True). compile needs a C++ compiler on CPU
        (else: eager, with a warning); clip_to_env makes the run's env once to read its action space."""
        _, cfg, data, model = model_from_checkpoint(run_dir, device)
        return cls.for_run(model, cfg, data, target_return, device=device, **kwargs)

    # ----- the stateful API ----------------------------------------------------------------------------
    def reset(self, n: int = 1, target_return: float | None = None, seeds=None) -> None:
        """Start n episodes, conditioned on target_return (raw; default: the policy's). seeds: the seeds the
        n environments were reset with, which a flicker view draws each episode's dropped frames from, as
        `evaluate` does (default 0..n-1); other views ignore them."""
        n = check_episode_count(n, UsageError)
        target = self.target_return if target_return is None else check_target_return(target_return, UsageError)
        # inside inference_mode, as every later step's tensors are: a compiled step guards on the difference
        with torch.inference_mode(), cpu_threads(self.threads, self.device):
            self.state = self.initial_state(n, target, seeds)
            self.actor.prepare(n, self.device, self.obs_dim, self.act_dim)

    @torch.inference_mode()
    def act(self, obs, reward=None) -> np.ndarray:
        """obs: one raw observation (obs_dim,) or a batch (N, obs_dim); reward: the reward each env received
        for the previous action (None at an episode's first step). Returns the action(s), clipped to the
        action space when it is known, with the shape of the input's batch."""
        obs, single = check_observations(obs, self.env_obs_dim, self.view.name, UsageError)
        started = 0 if self.state is None else self.state.rtg.shape[0]
        if not check_same_batch(obs.shape[0], started, reward, UsageError):
            self.reset(obs.shape[0])
        action, self.state = self._step_numpy(obs, reward, self.state)
        return action[0] if single else action

    @torch.inference_mode()
    def predict(
        self, obs, state: PolicyState | None = None, episode_start=None, deterministic: bool = True, reward=None
    ):
        """Stable-Baselines3's signature: returns (action, state). state None starts new episodes;
        episode_start (N,) bool restarts those envs (return-to-go, timestep, history, backbone state).
        Stable-Baselines3 passes no rewards; give `reward` to lower the return-to-go as DT does, or the
        policy stays conditioned on the full target. The policy is deterministic: `deterministic` is
        accepted for compatibility only."""
        obs, single = check_observations(obs, self.env_obs_dim, self.view.name, UsageError)
        if state is None:
            state = self.initial_state(obs.shape[0], self.target_return)
        elif state.rtg.shape[0] != obs.shape[0]:
            raise UsageError(f"predict() got {obs.shape[0]} observations for a state of {state.rtg.shape[0]} envs")
        if episode_start is not None:
            starts = check_episode_starts(episode_start, obs.shape[0], UsageError)
            if starts.any():
                state = self._restart(state, starts)
                if reward is not None:  # a new episode has no previous reward
                    reward = np.where(starts, 0.0, np.asarray(reward, dtype=np.float64).reshape(-1))
        action, state = self._step_numpy(obs, reward, state)
        return (action[0] if single else action), state

    # ----- one step, functional ------------------------------------------------------------------------
    def initial_state(self, n: int, target_return: float, seeds=None) -> PolicyState:
        seeds = list(range(n)) if seeds is None else list(seeds)
        if len(seeds) != n:
            raise UsageError(f"{len(seeds)} seeds for {n} episodes")
        view = None if self.view.name == "full" else self.view.start(n, seeds)
        rtg = torch.full((n, 1), target_return / self.rtg_scale, device=self.device)
        t = torch.zeros(n, dtype=torch.long, device=self.device)
        prev = torch.zeros(n, self.act_dim, device=self.device)
        return PolicyState(rtg, t, prev, self.actor.initial(n, self.device), view)

    def step(self, obs: torch.Tensor, reward, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        """obs (N, obs_dim) raw float32 on the device, already in the policy's view (act and predict apply it);
        reward (N,) or None -> (action (N, act_dim), new state)."""
        rtg = state.rtg
        if reward is not None:
            reward = torch.as_tensor(check_rewards(reward, rtg.shape[0], UsageError), dtype=torch.float32)
            rtg = rtg - reward.to(self.device).unsqueeze(1) / self.rtg_scale  # RTG_{t+1} = RTG_t - r_t / scale (DT)
        timestep = state.t.clamp(max=self.model.max_ep_len - 1)
        obs = (obs - self._mean) / self._std
        action, backbone = self.actor.act(obs, rtg, timestep, state.prev_action, state.t == 0, state.backbone)
        if not bool(torch.isfinite(action).all()):
            raise DivergedError("the policy produced a non-finite action (NaN or inf weights or inputs?)")
        if self._bounds is not None:
            action = torch.maximum(torch.minimum(action, self._bounds[1]), self._bounds[0])
        return action, PolicyState(rtg, state.t + 1, action, backbone, state.view)

    def _step_numpy(self, obs: np.ndarray, reward, state: PolicyState) -> tuple[np.ndarray, PolicyState]:
        """step() on the env's observations (N, env_obs_dim) in the model's view: act's and predict's path."""
        if state.view is not None:
            obs = state.view.step(obs, state.t.cpu().numpy())
        obs = torch.as_tensor(np.ascontiguousarray(obs, dtype=np.float32), device=self.device)
        with cpu_threads(self.threads, self.device):
            action, state = self.step(obs, reward, state)
        return action.float().cpu().numpy(), state

    def _restart(self, state: PolicyState, starts: np.ndarray) -> PolicyState:
        """Envs where starts (N,) is True begin new episodes: fresh return-to-go, timestep, action, backbone."""
        keep = torch.as_tensor(~starts, device=self.device)
        if state.view is not None:  # a restarted env draws its next episode's drops from its seed + n
            index = starts.nonzero()[0]
            state.view.restart(index, [state.view.seeds[i] + len(starts) for i in index])
        return PolicyState(
            torch.where(keep.unsqueeze(1), state.rtg, self.target_return / self.rtg_scale),
            torch.where(keep, state.t, 0),
            torch.where(keep.unsqueeze(1), state.prev_action, 0.0),
            self.actor.restart(state.backbone, keep),
            state.view,
        )


# The policy of a run directory's newest checkpoint (or of a checkpoint directory); see Policy.from_run.
load_policy = Policy.from_run
