"""Tiny datasets made inside the tests (Minari datasets, D4RL hdf5 files), batches, and finished runs for reports."""

from __future__ import annotations

import json

import h5py
import numpy as np
import torch

from decision_minrnn.data.episodes import Episode, write_d4rl_hdf5

OBS_DIM, ACT_DIM = 11, 3  # Hopper's spaces, so tiny datasets evaluate in the real Hopper-v5

# The overrides of a model and a run small enough for a test to train in seconds.
TINY = [
    "model.embed_dim=16",
    "model.n_layers=2",
    "data.context_len=8",
    "train.batch_size=8",
    "train.warmup_steps=5",
    "train.log_every=5",
    "eval.episodes=0",
    "train.lr=0.001",
]


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
    import gymnasium as gym
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


def make_d4rl_file(path, episodes, drop_keys=(), nan_obs=False):
    """Write D4RL v2 flat arrays (terminals / timeouts mark episode ends) with the package's writer; then,
    for error tests, drop keys or put a NaN into the observations."""
    write_d4rl_hdf5(
        path,
        [
            Episode(
                e["observations"][:-1],
                e["actions"],
                e["rewards"],
                bool(e["terminations"][-1]),
                bool(e["truncations"][-1]),
            )
            for e in episodes
        ],
    )
    if drop_keys or nan_obs:
        with h5py.File(path, "a") as f:
            for key in drop_keys:
                del f[key]
            if nan_obs:
                f["observations"][3, 2] = np.nan
    return path


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


def fake_run(root, label, backbone, seed, score, steps=6, **extra):
    """A finished run's config.yaml and final.json under root/label/backbone/seed<N>, for report tests."""
    run = root / label / backbone / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: x\n")
    summary = {
        "name": f"{label}/{backbone}/seed{seed}",
        "label": label,
        "step": steps,
        "finished": True,
        "backbone": backbone,
        "seed": seed,
        "behaviour_normalized": 35.0,
        "eval": {
            "target_return": 3600.0,
            "normalized_mean": score,
            "return_mean": None if score is None else 10 * score,
            "score_reference": "D4RL table",
        },
        **extra,
    }
    (run / "final.json").write_text(json.dumps(summary))
    return run
