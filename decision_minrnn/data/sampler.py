"""Training batches of K consecutive steps, drawn as the Decision Transformer draws them.

Episodes are picked with probability proportional to their length and a start uniformly inside the
episode (kzl/decision-transformer, gym/experiment.py). Departure from DT: windows that run past the
episode end are padded on the *right*, not the left. Every backbone here is causal, so padding after the
real steps can never reach them, while left padding would run pad tokens through a recurrent state
before the real data. ``mode="episode"`` returns whole episodes from their first step, for long-context
training: a batch's episodes come from one bucket of similar lengths (the longest at most
EPISODE_BUCKET_RATIO times the shortest) and K is the batch's longest, so padding stays under
1 - 1 / EPISODE_BUCKET_RATIO of the tokens. Buckets are drawn in proportion to their steps and episodes
within a bucket in proportion to their length, so every episode is still drawn in proportion to its length.

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

# Episode mode: the longest episode of a bucket is at most this times its shortest (padding < 1 - 1/1.1 = 9.1%).
EPISODE_BUCKET_RATIO = 1.1


def length_buckets(lengths: np.ndarray, ratio: float = EPISODE_BUCKET_RATIO) -> list[np.ndarray]:
    """Episode indices grouped by length, shortest first: each group's longest <= ratio x its shortest."""
    order = np.argsort(lengths, kind="stable")
    buckets, current = [], [order[0]]
    for i in order[1:]:
        if lengths[i] > ratio * lengths[current[0]]:
            buckets.append(np.array(current))
            current = []
        current.append(i)
    buckets.append(np.array(current))
    return buckets


class Batch(TypedDict, total=False):
    """A training batch, what WindowSampler.sample returns and DecisionModel.forward reads. Windows are
    right-padded: positions where mask is False hold zeros and are left out of the loss."""

    obs: torch.Tensor  # (B, K, obs_dim), normalized
    act: torch.Tensor  # (B, K, act_dim), the targets
    prev_act: torch.Tensor  # (B, K, act_dim), act shifted one step right (zero before the episode's first step)
    rtg: torch.Tensor  # (B, K, 1), return-to-go / rtg_scale
    timesteps: torch.Tensor  # (B, K) long, the step within the episode
    mask: torch.Tensor  # (B, K) bool, True on real steps


def batch_context(mode: str, context_len: int, lengths) -> int:
    """K, the longest a training batch can be: context_len, or in episode mode the longest episode (a batch is
    as long as its longest episode). The one place it is derived: the memory check asks it too."""
    return int(np.max(lengths)) if mode == "episode" else context_len


def training_context(cfg, dataset: OfflineDataset) -> int:
    """The run's K for this dataset (batch_context)."""
    return batch_context(cfg.data.sampler_mode, cfg.data.context_len, [len(e) for e in dataset.episodes])


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
        self.context_len = batch_context(mode, context_len, lengths)
        self.obs = torch.from_numpy(normalizer(np.concatenate([e.obs for e in episodes])))
        self.act = torch.from_numpy(np.concatenate([e.act for e in episodes]).astype(np.float32))
        self.rtg = torch.from_numpy(np.concatenate([returns_to_go(e.rew, rtg_scale) for e in episodes]))
        self.timesteps = torch.from_numpy(np.concatenate([clipped_timesteps(len(e), max_ep_len) for e in episodes]))
        self.lengths = torch.from_numpy(lengths)
        self.starts = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]]))
        self.probs = self.lengths.double() / self.lengths.sum()
        self.generator = torch.Generator().manual_seed(seed)
        if mode == "episode":
            self.buckets = [torch.from_numpy(b) for b in length_buckets(lengths)]
            self.bucket_probs = torch.stack([self.lengths[b].sum() for b in self.buckets]).double()
            self.bucket_probs /= self.bucket_probs.sum()

    def sample(self) -> Batch:
        """The next Batch of this sampler's seeded stream."""
        B, K = self.batch_size, self.context_len
        if self.mode == "episode":
            bucket = self.buckets[int(torch.multinomial(self.bucket_probs, 1, generator=self.generator))]
            pick = torch.multinomial(self.lengths[bucket].double(), B, replacement=True, generator=self.generator)
            ep = bucket[pick]
            length = self.lengths[ep]
            K = int(length.max())
            offset = torch.zeros(B, dtype=torch.long)
        else:
            ep = torch.multinomial(self.probs, B, replacement=True, generator=self.generator)
            length = self.lengths[ep]
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
