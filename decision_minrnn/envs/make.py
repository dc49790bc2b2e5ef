"""gym.make with a failure turned into one line naming the environment, for every place that makes one."""

from __future__ import annotations

import functools

import numpy as np

from ..errors import DataError, EnvError, first_line


def make_env(env_id: str, **kwargs):
    """gymnasium.make(env_id, **kwargs); an unknown id or a missing dependency is an EnvError of one line."""
    import gymnasium as gym  # not at import time: `datasets list` and the like never make an environment

    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        raise EnvError(f"cannot make environment {env_id!r}: {first_line(exc)}") from None


def action_bounds(env_id: str):
    """The action space's bounds of a Gymnasium env (made once per process, then closed): copies, (low, high)."""
    low, high = _action_bounds(env_id)
    return low.copy(), high.copy()


@functools.cache
def _action_bounds(env_id: str):
    env = make_env(env_id)
    try:
        return env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    finally:
        env.close()


RESET_SAMPLES = 20  # env resets that show where its episodes start
# Beyond the reset's spread, how far a typical episode may start: generous, so that only data that cannot be
# right is refused (a hopper scaled x100 starts at a height of 125 instead of 1.25).
START_SLACK = 10.0


def _check_episode_starts(dataset, env_id: str, starts: np.ndarray) -> None:
    """Every episode of the data starts where the environment starts one: the data's first observations lie
    within the reset's spread (the bench and D4RL-style data: within 1.3x of it). Observations scaled x100, or
    from another environment of the same dims, start far outside; the median episode decides, so a file cut
    in the middle of its first episode still passes, and the margin is wide (START_SLACK)."""
    center = starts.mean(axis=0)
    spread = float(np.abs(starts - center).max())
    offsets = np.array([np.abs(e.obs[0] - center).max() for e in dataset.episodes])
    typical = float(np.median(offsets))
    if typical > 20 * spread + START_SLACK:
        raise DataError(
            f"{dataset.name}'s episodes start {typical:.3g} away from {env_id}'s starting states (its resets spread "
            f"{spread:.3g}): the observations are in other units or come from another environment"
        )


def check_data_fits_env(dataset, env_id: str) -> None:
    """The data must fit the environment it will be evaluated in: its obs / act dims, and every action inside
    the action space (actions x50 would train without a word and act clipped). Run by `train` before its
    first step and by `datasets info`. dataset: an OfflineDataset (name, obs_dim, act_dim, episodes)."""
    env = make_env(env_id)
    obs_shape, space = env.observation_space.shape, env.action_space
    limit = env.spec.max_episode_steps if env.spec is not None else None
    starts = np.stack([env.reset(seed=seed)[0] for seed in range(RESET_SAMPLES)]) if obs_shape else None
    env.close()
    longest = max(range(len(dataset.episodes)), key=lambda i: len(dataset.episodes[i]))
    if limit and len(dataset.episodes[longest]) > limit:
        raise DataError(
            f"{dataset.name} episode {longest} has {len(dataset.episodes[longest])} steps, more than {env_id}'s "
            f"limit of {limit}: its episode ends are missing (D4RL's terminals / timeouts), so episodes run together"
        )
    if obs_shape != (dataset.obs_dim,) or space.shape != (dataset.act_dim,):
        raise DataError(
            f"the data's obs/act dims {dataset.obs_dim}/{dataset.act_dim} do not match {env_id}'s spaces "
            f"{obs_shape}/{space.shape}; set data.env_id to the environment the data came from"
        )
    if starts is not None and starts.shape[1:] == (dataset.obs_dim,):
        _check_episode_starts(dataset, env_id, starts)
    low, high = space.low, space.high
    slack = 1e-3 * (high - low)  # float32 rounding of actions stored at the bound
    for i, episode in enumerate(dataset.episodes):
        outside = (episode.act < low - slack) | (episode.act > high + slack)
        if outside.any():
            t, j = (int(k) for k in np.argwhere(outside)[0])
            raise DataError(
                f"{dataset.name} episode {i} step {t}: action {j} is {float(episode.act[t, j]):.3g}, outside "
                f"{env_id}'s action space [{float(low[j]):g}, {float(high[j]):g}]; the actions are in other "
                "units or come from another environment"
            )
