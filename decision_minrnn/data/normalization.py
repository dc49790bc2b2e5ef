"""Preprocessing of the Decision Transformer (kzl/decision-transformer, gym/experiment.py):
state mean/std over the whole dataset (std + 1e-6), undiscounted return-to-go divided by a scale
(1000 for locomotion), timesteps clipped to the timestep-embedding table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OBS_STD_EPS = 1e-6


@dataclass
class ObsNormalizer:
    mean: np.ndarray  # (obs_dim,)
    std: np.ndarray  # (obs_dim,), already + 1e-6

    @classmethod
    def fit(cls, episodes) -> ObsNormalizer:
        obs = np.concatenate([e.obs for e in episodes], axis=0).astype(np.float64)
        return cls(obs.mean(0).astype(np.float32), (obs.std(0) + OBS_STD_EPS).astype(np.float32))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return ((obs - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> ObsNormalizer:
        return cls(np.asarray(d["mean"], dtype=np.float32), np.asarray(d["std"], dtype=np.float32))


def returns_to_go(rew: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """rtg_t = sum_{t' >= t} r_t' / scale (undiscounted, as DT). Accumulated in float64."""
    rtg = np.cumsum(rew[::-1].astype(np.float64))[::-1]
    return (rtg / scale).astype(np.float32)


def clipped_timesteps(length: int, max_ep_len: int) -> np.ndarray:
    """0..length-1, clipped to max_ep_len - 1 (the last row of the timestep embedding)."""
    return np.minimum(np.arange(length), max_ep_len - 1).astype(np.int64)
