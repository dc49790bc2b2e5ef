"""Training batches of K consecutive steps, drawn as the Decision Transformer draws them.

Episodes are picked with probability proportional to their length and a start uniformly inside the
episode (kzl/decision-transformer, gym/experiment.py). Departure from DT: windows that run past the
episode end are padded on the *right*, not the left. Every backbone here is causal, so padding after the
real steps can never reach them, while left padding would run pad tokens through a recurrent state
before the real data. ``mode="episode"`` returns whole episodes from their first step (K = longest
episode), for long-context training of the linear-time backbones.

All data live as flat tensors; a batch is one gather, so sampling costs far less than a training step
(scripts/bench_sampler.py).
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import torch

from ..choices import SAMPLER_MODES
from .episodes import OfflineDataset
from .normalization import ObsNormalizer, clipped_timesteps, returns_to_go


class Batch(TypedDict, total=False):
    """A training batch, what WindowSampler.sample returns and DecisionModel.forward reads. Windows are
    right-padded: positions where mask is False hold zeros and are left out of the loss."""

    obs: torch.Tensor  # (B, K, obs_dim), normalized
    act: torch.Tensor  # (B, K, act_dim), the targets
    prev_act: torch.Tensor  # (B, K, act_dim), act shifted one step right (zero before the episode's first step)
    rtg: torch.Tensor  # (B, K, 1), return-to-go / rtg_scale
    timesteps: torch.Tensor  # (B, K) long, the step within the episode
    mask: torch.Tensor  # (B, K) bool, True on real steps


class WindowSampler:
    def __init__(
        self,
        dataset: OfflineDataset,
        normalizer: ObsNormalizer,
        context_len: int,
        batch_size: int,
        rtg_scale: float = 1000.0,
        max_ep_len: int = 1000,
        mode: str = "window",
        seed: int = 0,
    ):
        if mode not in SAMPLER_MODES:
            raise ValueError(f"unknown sampler mode {mode!r}; choose one of {', '.join(SAMPLER_MODES)}")
        episodes = dataset.episodes
        lengths = np.array([len(e) for e in episodes])
        self.mode = mode
        self.batch_size = batch_size
        self.context_len = int(lengths.max()) if mode == "episode" else context_len
        self.obs = torch.from_numpy(normalizer(np.concatenate([e.obs for e in episodes])))
        self.act = torch.from_numpy(np.concatenate([e.act for e in episodes]).astype(np.float32))
        self.rtg = torch.from_numpy(np.concatenate([returns_to_go(e.rew, rtg_scale) for e in episodes]))
        self.timesteps = torch.from_numpy(np.concatenate([clipped_timesteps(len(e), max_ep_len) for e in episodes]))
        self.lengths = torch.from_numpy(lengths)
        self.starts = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]]))
        self.probs = self.lengths.double() / self.lengths.sum()
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self) -> Batch:
        """The next Batch of this sampler's seeded stream."""
        B, K = self.batch_size, self.context_len
        ep = torch.multinomial(self.probs, B, replacement=True, generator=self.generator)
        length = self.lengths[ep]
        if self.mode == "episode":
            offset = torch.zeros(B, dtype=torch.long)
        else:
            offset = (torch.rand(B, generator=self.generator) * length).long().clamp_max(length - 1)
        steps = torch.arange(K)
        mask = steps[None, :] < (length - offset)[:, None]
        # Padded positions read the window's last real step (any valid index) and are zeroed below.
        index = self.starts[ep, None] + torch.minimum(offset[:, None] + steps[None, :], (length - 1)[:, None])
        m = mask.unsqueeze(-1)
        # The action before each step (zero at the episode's first step), for the fused token layout.
        has_prev = (offset[:, None] + steps[None, :] > 0) & mask
        prev_act = self.act[(index - 1).clamp(min=0)] * has_prev.unsqueeze(-1)
        return {
            "obs": self.obs[index] * m,
            "act": self.act[index] * m,
            "prev_act": prev_act,
            "rtg": (self.rtg[index] * mask).unsqueeze(-1),
            "timesteps": self.timesteps[index] * mask,
            "mask": mask,
        }

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def training_sampler(cfg, dataset: OfflineDataset, obs_norm: ObsNormalizer) -> WindowSampler:
    """The run's batch stream: its seed fixes every batch, so two models given it see the same data."""
    d = cfg.data
    return WindowSampler(
        dataset,
        obs_norm,
        d.context_len,
        cfg.train.batch_size,
        d.rtg_scale,
        d.max_ep_len,
        d.sampler_mode,
        seed=cfg.train.seed,
    )
