"""Observation views: what of the environment's observation the model is shown (`data.observe`).

* full: the observation as Gymnasium gives it (nothing changes).
* positions: the joint positions and the torso's height and angle only (Ni et al. 2022's "-P" tasks): the
  velocities are hidden, but two frames give them back, so a short window suffices. The control.
* velocities: the velocities only ("-V"): the positions must be integrated from the velocities since the
  episode started, which a 20-step window cannot do and a state carried from t=0 can.
* flicker: the full observation with frames dropped at random with probability `flicker_p` (DeFog, Hu et al.
  ICLR 2023). As in DeFog a dropped frame repeats the last observed one, and the model is told how many steps
  ago that was. DeFog embeds that count with a learned table added to the tokens; here it is one more
  observation feature (standardized by the observation normalizer like the rest), which the state embedding's
  Linear reads: the same information, and every token layout, export and runner takes it unchanged. An
  episode's first frame is always observed (there is nothing to repeat yet).

The drops of an episode are a pure function of (seed, p): `flicker_mask`. The offline data draws each episode's
mask from a fixed per-dataset seed (FLICKER_DATA_SEED, the dataset's name, the episode's index); an evaluation
episode from the seed its environment was reset with. Data and evaluation therefore share one rule, and a
rollout is reproducible from its seed.

This module needs numpy only (no torch, nothing else of the package), so that the ONNX runner, which must run
without torch, applies exactly the same transform as the torch Policy.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

VIEWS = ("full", "positions", "velocities", "flicker")

# Gymnasium's documented observation layout for Hopper, Walker2d and HalfCheetah, v4 and v5 (their default
# exclude_current_positions_from_observation=True): qpos[1:] first, then qvel. task -> (obs dim, positions).
POSITION_SPLIT = {"hopper": (11, 5), "walker2d": (17, 8), "halfcheetah": (17, 8)}

# The seed of the offline data's frame drops, fixed so that every run of a dataset sees the same drops.
FLICKER_DATA_SEED = 20230501
# Steps of drops drawn per evaluation episode; a step beyond it is always observed (MuJoCo's episodes end at 1000).
FLICKER_HORIZON = 10_000


class ViewError(ValueError):
    """A view that cannot apply (unknown name, an env without a documented layout, a bad flicker_p)."""


def check_flicker(name: str, flicker_p: float | None) -> None:
    """flicker needs its drop probability in (0, 1), and no other view reads one (config.validate asks this
    at load time, ObservationView.build again where a view is made)."""
    if name == "flicker" and (flicker_p is None or not 0.0 < flicker_p < 1.0):
        raise ViewError(f"data.observe=flicker needs data.flicker_p in (0, 1), got {flicker_p}")
    if name != "flicker" and flicker_p is not None:
        raise ViewError(f"data.flicker_p={flicker_p} applies only to data.observe=flicker, not {name}; remove it")


def flicker_mask(seed, length: int, p: float) -> np.ndarray:
    """(length,) bool, True where the frame is dropped; step 0 is never dropped. A prefix of the mask does not
    depend on `length` (the uniforms are drawn in order), so a rollout and its data agree step by step."""
    dropped = np.random.default_rng(seed).random(length) < p
    dropped[:1] = False
    return dropped


def data_episode_seed(dataset_name: str, index: int) -> list[int]:
    """The flicker seed of the offline data's episode `index` (fixed per dataset)."""
    return [FLICKER_DATA_SEED, zlib.crc32(dataset_name.encode()), index]


@dataclass(frozen=True)
class ObservationView:
    """One view of one task's observations: `env_obs_dim` in, `obs_dim` out."""

    name: str = "full"
    env_obs_dim: int = 0
    flicker_p: float | None = None
    task: str | None = None

    @classmethod
    def build(cls, name: str, env_obs_dim: int, task: str | None, flicker_p: float | None = None, where: str = ""):
        """The view `name` for observations of `env_obs_dim` from `task`; refuses in one line what cannot apply."""
        if name not in VIEWS:
            raise ViewError(f"data.observe={name!r} is not one of {', '.join(VIEWS)}")
        if name in ("positions", "velocities"):
            split = POSITION_SPLIT.get(task or "")
            if split is None:
                raise ViewError(
                    f"data.observe={name} needs Hopper, Walker2d or HalfCheetah (v4/v5), whose observation layout "
                    f"Gymnasium documents; {where or 'this data'} is {task or 'of an unknown task'}"
                )
            if split[0] != env_obs_dim:
                raise ViewError(
                    f"data.observe={name}: {task} observations have {split[0]} dims in Gymnasium v4/v5, but "
                    f"{where or 'the data'} has {env_obs_dim}; the position/velocity split does not apply"
                )
        check_flicker(name, flicker_p)
        return cls(name, int(env_obs_dim), None if flicker_p is None else float(flicker_p), task)

    @property
    def obs_dim(self) -> int:
        """What the model reads."""
        if self.name in ("positions", "velocities"):
            positions = POSITION_SPLIT[self.task][1]
            return positions if self.name == "positions" else self.env_obs_dim - positions
        return self.env_obs_dim + (self.name == "flicker")

    def _columns(self, obs: np.ndarray) -> np.ndarray:
        if self.name == "positions":
            return obs[..., : POSITION_SPLIT[self.task][1]]
        if self.name == "velocities":
            return obs[..., POSITION_SPLIT[self.task][1] :]
        return obs

    def episode(self, obs: np.ndarray, seed) -> np.ndarray:
        """A whole episode's observations (T, env_obs_dim) -> (T, obs_dim); seed: its flicker seed."""
        if self.name != "flicker":
            return self._columns(obs)
        # The stream's rule at once: each step shows the last observed frame and the steps since it.
        steps = np.arange(len(obs))
        observed_at = np.maximum.accumulate(np.where(flicker_mask(seed, len(obs), self.flicker_p), 0, steps))
        since = (steps - observed_at).astype(np.float32)
        return np.concatenate([obs[observed_at].astype(np.float32), since[:, None]], axis=1)

    def start(self, n: int, seeds) -> ViewStream:
        """The online form for n episodes run side by side, episode i's drops seeded by seeds[i]."""
        return ViewStream(self, n, list(seeds))

    def to_dict(self) -> dict:
        return {"name": self.name, "env_obs_dim": self.env_obs_dim, "flicker_p": self.flicker_p, "task": self.task}

    @classmethod
    def from_dict(cls, d: dict | None, obs_dim: int) -> ObservationView:
        """The view a checkpoint recorded; none recorded (a run from before views): the full observation."""
        if not d:
            return cls("full", obs_dim)
        return cls(str(d["name"]), int(d["env_obs_dim"]), d.get("flicker_p"), d.get("task"))


class ViewStream:
    """A view applied step by step to N episodes (what a Policy or the ONNX runner carries): for flicker, each
    episode's drop mask, its last observed frame and the steps since."""

    def __init__(self, view: ObservationView, n: int, seeds: list):
        if len(seeds) != n:
            raise ViewError(f"{len(seeds)} flicker seeds for {n} episodes")
        self.view, self.seeds = view, list(seeds)
        self.masks = self.last = self.since = None
        if view.name == "flicker":
            self.masks = np.stack([flicker_mask(s, FLICKER_HORIZON, view.flicker_p) for s in self.seeds])
            self.last = np.zeros((n, view.env_obs_dim), dtype=np.float32)
            self.since = np.zeros(n, dtype=np.float32)

    def step(self, obs: np.ndarray, t) -> np.ndarray:
        """obs (N, env_obs_dim) raw, t (N,) each episode's step (0 at its first) -> (N, obs_dim)."""
        if self.masks is None:
            return self.view._columns(obs)
        t = np.broadcast_to(np.asarray(t, dtype=np.int64), (len(obs),))
        inside = t < FLICKER_HORIZON
        dropped = np.zeros(len(obs), dtype=bool)
        dropped[inside] = self.masks[np.flatnonzero(inside), t[inside]]
        self.last = np.where(dropped[:, None], self.last, obs).astype(np.float32)
        self.since = np.where(dropped, self.since + 1, 0).astype(np.float32)
        return np.concatenate([self.last, self.since[:, None]], axis=1)

    def restart(self, index, seeds) -> None:
        """Episodes `index` start anew, with these seeds (predict's episode_start)."""
        for i, s in zip(np.asarray(index).reshape(-1).tolist(), seeds):
            self.seeds[i] = s
            if self.masks is not None:
                self.masks[i] = flicker_mask(s, FLICKER_HORIZON, self.view.flicker_p)
