"""Reference scores, evaluation targets and env ids per locomotion task: the single table for all of them.

D4RL normalization (d4rl/infos.py): score = 100 * (R - random) / (expert - random).
Targets: the Decision Transformer's conditioning returns (kzl/decision-transformer, gym/experiment.py).
"""

from __future__ import annotations

from dataclasses import dataclass

D4RL_REF_SCORES = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
}

DT_TARGET_RETURNS = {
    "halfcheetah": (12000.0, 6000.0),
    "hopper": (3600.0, 1800.0),
    "walker2d": (5000.0, 2500.0),
}

ENV_NAMES = {"halfcheetah": "HalfCheetah", "hopper": "Hopper", "walker2d": "Walker2d"}


@dataclass(frozen=True)
class RefScores:
    """Random and expert returns used to normalize, and where they came from."""

    min: float
    max: float
    source: str  # "minari metadata" or "D4RL table"

    def normalize(self, ret):
        return 100.0 * (ret - self.min) / (self.max - self.min)


def task_of(name: str | None) -> str | None:
    """'Hopper-v5', 'hopper-medium-v2', 'mujoco/hopper/medium-v0' -> 'hopper' (None if not a known task)."""
    if not name:
        return None
    lowered = name.lower().replace("_", "").replace("-", "")
    for task in ("halfcheetah", "hopper", "walker2d"):
        if task in lowered:
            return task
    return None


def env_id_for(task: str, version: str = "v5") -> str:
    return f"{ENV_NAMES[task]}-{version}"


def d4rl_ref_scores(task: str | None) -> RefScores | None:
    if task not in D4RL_REF_SCORES:
        return None
    lo, hi = D4RL_REF_SCORES[task]
    return RefScores(lo, hi, "D4RL table")


def default_targets(task: str | None) -> tuple[float, ...] | None:
    return DT_TARGET_RETURNS.get(task)
