"""Offline data: sources (Minari, D4RL hdf5, compositions), preprocessing and the window sampler."""

from .episodes import Episode, OfflineDataset, compose, load_d4rl_hdf5, load_minari, load_source
from .normalization import ObsNormalizer, clipped_timesteps, returns_to_go
from .sampler import SAMPLER_MODES, WindowSampler

__all__ = [
    "Episode", "ObsNormalizer", "OfflineDataset", "SAMPLER_MODES", "WindowSampler", "clipped_timesteps",
    "compose", "load_d4rl_hdf5", "load_minari", "load_source", "returns_to_go",
]
