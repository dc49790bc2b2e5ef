"""Batched evaluation rollouts in Gymnasium MuJoCo, conditioned on target returns.

N episodes run together: one model call per environment step for all of them, episodes that end are
masked (never reset mid-evaluation), episode i is seeded with seed + i.

Why not gymnasium.vector.SyncVectorEnv: its autoreset modes either start a new episode in a finished
slot (NEXT_STEP / SAME_STEP, wasting MuJoCo steps on episodes we would throw away) or refuse to step a
finished env (DISABLED). A fixed set of N episodes needs neither, so `EpisodeBatch` steps only the
envs still running; it is the same thing a vector env does in one process, minus the autoreset.

Modes:
* recurrent: ``DecisionModel.step`` once per env step with the backbone state carried from the episode start (O(1)).
* window: DT's evaluation (kzl/decision-transformer evaluate_episode_rtg): re-run the last K steps from a
  zero state at every env step (O(K)). The transformer has only this mode.
Both run through `decision_minrnn.policy.Policy`, the object users act with, so there is one rollout path.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch

from .data.info import DataInfo
from .envs.make import make_env
from .envs.video import prepare_headless_rendering, render_frame, write_mp4
from .errors import DivergedError, EnvError, UsageError
from .memory import check_evaluation_memory
from .policy import Policy
from .runs import env_of


class EpisodeBatch:
    """N independent Gymnasium envs stepped together; finished ones stop being stepped.

    record_first: env 0 renders an RGB frame after its reset and after each of its steps (`frames`). Render
    time is kept out of `env_seconds`, so timings compare the model with MuJoCo's physics only.
    """

    def __init__(self, env_id: str, n: int, max_steps: int = 1000, record_first: bool = False):
        self.envs = [
            make_env(
                env_id, max_episode_steps=max_steps, **({"render_mode": "rgb_array"} if record_first and i == 0 else {})
            )
            for i in range(n)
        ]
        self.frames: list[np.ndarray] | None = [] if record_first else None
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.active = np.ones(n, dtype=bool)
        self.returns = np.zeros(n)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.env_seconds = 0.0

    def reset(self, seeds: list[int]) -> np.ndarray:
        start = time.perf_counter()
        obs = np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, seeds)])
        self.env_seconds += time.perf_counter() - start
        self._record_first()
        return obs

    def _record_first(self):
        if self.frames is not None:
            self.frames.append(render_frame(self.envs[0]))

    def step(self, actions: np.ndarray, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step the active envs; returns (next obs, rewards) with zeros / old obs for finished ones."""
        rewards = np.zeros(len(self.envs))
        obs = obs.copy()
        first_stepped = bool(self.active[0])
        start = time.perf_counter()
        for i in np.flatnonzero(self.active):
            o, r, terminated, truncated, _ = self.envs[i].step(actions[i])
            obs[i], rewards[i] = o, r
            self.returns[i] += r
            self.lengths[i] += 1
            if terminated or truncated:
                self.active[i] = False
        self.env_seconds += time.perf_counter() - start
        if first_stepped:
            self._record_first()
        return obs, rewards

    def close(self):
        for env in self.envs:
            env.close()


class RolloutTiming(TypedDict):
    model_seconds: float
    env_seconds: float
    model_per_batched_step_ms: float  # one policy call for all episodes at once
    env_per_env_step_ms: float


class TargetResult(TypedDict, total=False):
    """One target return's rollouts, as rollout() returns them and metrics.jsonl stores them (without timing).
    The normalized fields are present when the run has reference scores, video when one was asked for."""

    target_return: float
    mode: str  # recurrent | window
    episodes: int
    returns: list[float]
    lengths: list[int]
    return_mean: float
    return_std: float  # population std over the episodes
    env_steps: int
    timing: RolloutTiming
    normalized: list[float]
    normalized_mean: float
    normalized_std: float
    score_reference: str  # where the reference scores came from ("minari metadata", "D4RL table")
    video: str


def _check_spaces(batch: EpisodeBatch, model: Policy) -> None:
    obs_shape, act_shape = batch.observation_space.shape, batch.action_space.shape
    if obs_shape != (model.env_obs_dim,) or act_shape != (model.act_dim,):
        raise EnvError(
            f"environment spaces obs {obs_shape} / act {act_shape} do not match the checkpoint's "
            f"obs ({model.env_obs_dim},) / act ({model.act_dim},)"
        )


@torch.no_grad()
def rollout(
    policy: Policy,
    episodes: int = 10,
    seed: int = 0,
    max_steps: int = 1000,
    video_path: str | Path | None = None,
) -> TargetResult:
    """Run `episodes` episodes of a built policy (conditioned on its target return) in its env; returns the
    per-episode returns, normalized with its data's reference scores, and the timings. video_path: also write
    the first episode (seed `seed`) there as an mp4."""
    if not policy.env_id:
        raise EnvError("the policy's data names no environment to roll out in; set data.env_id")
    check_evaluation_memory(episodes)
    if video_path is not None:
        prepare_headless_rendering()
    batch = EpisodeBatch(policy.env_id, episodes, max_steps, record_first=video_path is not None)
    try:
        result = _run_episodes(policy, batch, episodes, seed, max_steps)
        if video_path is not None:
            fps = batch.envs[0].metadata.get("render_fps") or 30
            result["video"] = str(write_mp4(batch.frames, video_path, fps))
        return result
    finally:
        batch.close()


def _run_episodes(policy: Policy, batch: EpisodeBatch, episodes, seed, max_steps) -> dict:
    _check_spaces(batch, policy)
    seeds = [seed + i for i in range(episodes)]
    policy.reset(episodes, seeds=seeds)  # a flicker view draws episode i's dropped frames from its env's seed
    obs = batch.reset(seeds)
    rewards = None  # finished episodes get r = 0 from EpisodeBatch and are ignored anyway
    model_seconds = 0.0
    for _ in range(max_steps):
        if not batch.active.any():
            break
        start = time.perf_counter()
        action = policy.act(obs, rewards)
        model_seconds += time.perf_counter() - start
        obs, rewards = batch.step(action, obs)
    returns = batch.returns.copy()
    if not np.isfinite(returns).all():
        raise DivergedError(
            f"evaluation in {policy.env_id} produced a non-finite return (NaN or inf weights, "
            "normalizer or target?); no score was recorded"
        )
    result: TargetResult = {
        "target_return": float(policy.target_return),
        "mode": policy.mode,
        "episodes": episodes,
        "returns": returns.tolist(),
        "lengths": batch.lengths.tolist(),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "env_steps": int(batch.lengths.sum()),
        "timing": {
            "model_seconds": model_seconds,
            "env_seconds": batch.env_seconds,
            "model_per_batched_step_ms": 1e3 * model_seconds / max(1, int(batch.lengths.max())),
            "env_per_env_step_ms": 1e3 * batch.env_seconds / max(1, int(batch.lengths.sum())),
        },
    }
    ref_scores = policy.data.ref_scores
    if ref_scores is not None:
        normalized = ref_scores.normalize(returns)
        result.update(
            normalized=normalized.tolist(),
            normalized_mean=float(normalized.mean()),
            normalized_std=float(normalized.std()),
            score_reference=ref_scores.source,
        )
    return result


def without_timing(results: list[TargetResult]) -> list[TargetResult]:
    """The results as metrics.jsonl, final.json and target_sweep.json keep them: timings are this machine's."""
    return [{k: v for k, v in r.items() if k != "timing"} for r in results]  # type: ignore[misc]


def evaluate_targets(
    model,
    cfg,
    data: DataInfo,
    targets,
    episodes: int,
    mode: str,
    seed: int,
    max_steps: int,
    device,
    video_dir: str | Path | None = None,
    compile: bool = False,
) -> list[TargetResult]:
    """One policy and one rollout batch per target return (DT evaluates each of its two targets separately).
    video_dir: one mp4 per target, of the episode seeded `seed` (video_paths); none of them may exist yet."""
    videos = video_paths(env_of(data), targets, seed, video_dir)
    taken = [str(p) for p in videos if p is not None and (p.exists() or p.is_symlink())]
    if taken:  # checked before any rollout: a video is never written over a file
        raise UsageError(f"--video: {', '.join(taken)} already exist(s); remove them or choose another directory")
    if mode == "recurrent" and not model.recurrent:
        raise UsageError(f"the {model.backbone_name} backbone cannot step recurrently; use --mode window")
    results = []
    for target, video in zip(targets, videos):
        policy = Policy.for_run(model, cfg, data, float(target), mode=mode, device=device, compile=compile)
        results.append(rollout(policy, episodes, seed, max_steps, video))
    return results


def video_paths(env_id: str, targets, seed: int, video_dir: str | Path | None) -> list[Path | None]:
    """Where evaluate --video writes each target's mp4."""
    if video_dir is None:
        return [None for _ in targets]
    return [Path(video_dir) / f"{env_id}-target{target:g}-seed{seed}.mp4" for target in targets]
