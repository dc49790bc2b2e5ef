"""Synthetic data for tests, benchmarks and scripts: Hopper-shaped episodes whose action is a fixed smooth
function of the observation (so a policy can learn it), a Minari dataset written from them, and training
batches of random numbers in the sampler's layout. One place, so that a benchmark times the batches the tests
check."""

from __future__ import annotations

import numpy as np
import torch

OBS_DIM, ACT_DIM = 11, 3  # Hopper's spaces, so synthetic datasets evaluate in the real Hopper-v5


def synthetic_episodes(n_episodes=6, lengths=None, seed=0, obs_dim=OBS_DIM, act_dim=ACT_DIM):
    """Episodes whose action is a fixed smooth function of the observation, so a policy can learn it.

    Returns dicts with obs (T+1, obs_dim) as Minari stores them, act (T, act_dim), rew, term, trunc.
    """
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(123).normal(size=(obs_dim, act_dim)) / np.sqrt(obs_dim)
    episodes = []
    for i in range(n_episodes):
        T = int(lengths[i]) if lengths is not None else int(rng.integers(15, 40))
        obs = rng.normal(size=(T + 1, obs_dim))
        act = np.tanh(obs[:-1] @ weights)
        rew = rng.uniform(0.0, 2.0, size=T) + act.sum(-1)
        terminated = i % 2 == 0
        episodes.append(
            {
                "observations": obs,
                "actions": act.astype(np.float32),
                "rewards": rew,
                "terminations": np.array([False] * (T - 1) + [terminated]),
                "truncations": np.array([False] * (T - 1) + [not terminated]),
            }
        )
    return episodes


def make_minari_dataset(dataset_id, episodes, env="Hopper-v5", ref_scores=(-20.272305, 3234.3), eval_env=None):
    """Write a Minari dataset under the current MINARI_DATASETS_PATH."""
    import gymnasium as gym  # the Minari writer only here: random_batch needs neither
    import minari
    from minari.data_collector import EpisodeBuffer

    obs_dim = episodes[0]["observations"].shape[1]
    act_dim = episodes[0]["actions"].shape[1]
    buffers = [
        EpisodeBuffer(
            id=i,
            observations=e["observations"],
            actions=e["actions"],
            rewards=e["rewards"],
            terminations=e["terminations"],
            truncations=e["truncations"],
        )
        for i, e in enumerate(episodes)
    ]
    kwargs = {}
    if ref_scores is not None:
        kwargs = {"ref_min_score": ref_scores[0], "ref_max_score": ref_scores[1]}
    return minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        env=env,
        eval_env=eval_env,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64),
        action_space=gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32),
        algorithm_name="synthetic",
        **kwargs,
    )


def random_batch(B=2, K=9, obs_dim=OBS_DIM, act_dim=ACT_DIM, dtype=torch.float64, seed=0, device="cpu", padded=False):
    """A training batch as the sampler gives it (obs, act, prev_act, rtg, timesteps, mask), from random numbers.
    Every window starts at its episode's first step (timesteps 0..K-1), so prev_act is act shifted right
    with zeros first. padded: the first window ends 3 steps early (right padding, masked out)."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, K, dtype=torch.bool)
    if padded:
        mask[0, K - 3 :] = False
    batch = {
        "obs": torch.randn(B, K, obs_dim, generator=gen, dtype=dtype),
        "act": torch.rand(B, K, act_dim, generator=gen, dtype=dtype) * 2 - 1,
        "rtg": torch.randn(B, K, 1, generator=gen, dtype=dtype),
        "timesteps": torch.arange(K).repeat(B, 1),
        "mask": mask,
    }
    batch["prev_act"] = torch.cat([torch.zeros_like(batch["act"][:, :1]), batch["act"][:, :-1]], dim=1)
    return {k: v.to(device) for k, v in batch.items()}
