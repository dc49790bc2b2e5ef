"""gym.make with a failure turned into one line naming the environment, for every place that makes one."""

from __future__ import annotations

from ..errors import EnvError, first_line


def make_env(env_id: str, **kwargs):
    """gymnasium.make(env_id, **kwargs); an unknown id or a missing dependency is an EnvError of one line."""
    import gymnasium as gym  # not at import time: `datasets list` and the like never make an environment

    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        raise EnvError(f"cannot make environment {env_id!r}: {first_line(exc)}") from None
