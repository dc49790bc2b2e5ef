"""What a policy accepts at each call, checked once for both policies: the torch Policy (policy.py) and the
ONNX runner's OnnxPolicy (onnx_runner.py), so that the two refuse the same calls with the same line. numpy only:
the runner loads this file from its own folder, as it loads views.py. Each check raises the caller's error
class (UsageError, PolicyInputError)."""

from __future__ import annotations

import numpy as np


def check_episode_count(n, error: type[Exception]) -> int:
    """reset(n): the number of episodes, an integer >= 1 (not a bool, not 2.5)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise error(f"reset(n={n!r}): n must be an integer >= 1 (the number of episodes)")
    return int(n)


def check_target_return(value, error: type[Exception]) -> float:
    try:
        target = float(value)
    except (TypeError, ValueError):
        raise error(f"target return {value!r} is not a number") from None
    if not np.isfinite(target):
        raise error(f"target return {value} is not finite")
    return target


def check_observations(obs, env_obs_dim: int, view_name: str, error: type[Exception]) -> tuple[np.ndarray, bool]:
    """The env's whole observations, (env_obs_dim,) or (N, env_obs_dim), as (N, env_obs_dim) float32, and whether
    a single one came (its action goes back unbatched)."""
    try:
        array = np.asarray(obs, dtype=np.float32)
    except (TypeError, ValueError):
        raise error(f"observation {_short(obs)} is not an array of numbers") from None
    single = array.ndim == 1
    if single:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != env_obs_dim:
        seen = "" if view_name == "full" else f" (whole; we take the {view_name} view)"
        raise error(
            f"observation of shape {np.shape(obs)} does not fit the policy's obs_dim {env_obs_dim}{seen}: "
            "pass (obs_dim,) or (N, obs_dim)"
        )
    if not np.isfinite(array).all():
        raise error("observation contains NaN or inf")
    return array, single


def check_same_batch(n_obs: int, started: int, reward, error: type[Exception]) -> bool:
    """act(): whether the batch is the one reset() started. Another size with a reward is a batch that changed
    mid-episode (a mistake, refused); without one it starts new episodes (False)."""
    if n_obs == started:
        return True
    if started and reward is not None:
        raise error(f"act() got {n_obs} observations but reset() started {started} episodes")
    return False


def check_rewards(reward, n: int, error: type[Exception]) -> np.ndarray:
    """The reward each of n envs received for the previous action, (n,) float64."""
    try:
        values = np.asarray(reward, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise error(f"reward must hold {n} finite values, got {_short(reward)}") from None
    if values.shape[0] != n or not np.isfinite(values).all():
        raise error(f"reward must hold {n} finite values")
    return values


def check_episode_starts(flags, n: int, error: type[Exception]) -> np.ndarray:
    """predict()'s episode_start: n booleans (or 0/1 integers), as (n,) bool."""
    array = np.asarray(flags)
    if array.size != n or not (array.dtype == bool or np.issubdtype(array.dtype, np.integer)):
        raise error(f"episode_start must hold {n} booleans (one per observation), got {array.tolist()!r}")
    return array.astype(bool).reshape(-1)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
