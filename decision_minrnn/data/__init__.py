"""Offline data: sources (Minari, D4RL hdf5, compositions), preprocessing and the window sampler."""

from .episodes import Episode, OfflineDataset, compose, load_d4rl_hdf5, load_minari, load_source
from .normalization import ObsNormalizer, clipped_timesteps, returns_to_go

__all__ = [
    "Episode",
    "ObsNormalizer",
    "OfflineDataset",
    "SAMPLER_MODES",
    "WindowSampler",
    "clipped_timesteps",
    "compose",
    "load_d4rl_hdf5",
    "load_minari",
    "load_source",
    "returns_to_go",
]


def __getattr__(name):
    # The sampler needs torch; `datasets list / info` do not, and start faster without it.
    if name in ("SAMPLER_MODES", "WindowSampler"):
        from . import sampler

        return getattr(sampler, name)
    raise AttributeError(f"module 'decision_minrnn.data' has no attribute {name!r}")
