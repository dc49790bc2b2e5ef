"""DataInfo: what a run keeps of its training data, the `data` block of every checkpoint's state.json.

Evaluation, export and load_policy rebuild a policy from it without the dataset: the env to roll out in, the
observation normalizer, the reference scores, and the dims of the model."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..views import ObservationView
from .normalization import ObsNormalizer
from .scores import RefScores


@dataclass
class DataInfo:
    name: str
    obs_dim: int
    act_dim: int
    obs_norm: ObsNormalizer
    env_id: str | None = None
    task: str | None = None  # e.g. "hopper", picks DT's default target returns
    parts: list[str] = field(default_factory=list)  # the datasets a composed source was made of
    episodes: int = 0
    steps: int = 0
    ref_scores: RefScores | None = None
    behaviour_normalized: float | None = None  # the data's own mean normalized return
    # The raw episode returns' {"min", "median", "mean", "max"}: the range of evaluate --target-sweep and the
    # reference lines of the report's conditioning curves. None in checkpoints written before it was kept.
    episode_returns: dict[str, float] | None = None
    # What the model is shown of the env's observation (views.py); obs_dim is its output. A loaded policy
    # applies it to the env's full observations itself.
    view: ObservationView | None = None

    def __post_init__(self):
        if self.view is None:
            self.view = ObservationView("full", self.obs_dim)

    @classmethod
    def of(cls, dataset, obs_norm: ObsNormalizer, view: ObservationView | None = None) -> DataInfo:
        """From a loaded OfflineDataset (already in its view) and the normalizer fitted on it."""
        described = dataset.describe()
        return cls(
            view=view,
            name=dataset.name,
            obs_dim=dataset.obs_dim,
            act_dim=dataset.act_dim,
            obs_norm=obs_norm,
            env_id=dataset.env_id,
            task=dataset.task,
            parts=list(dataset.parts or [dataset.name]),
            episodes=len(dataset.episodes),
            steps=dataset.num_steps,
            ref_scores=dataset.ref_scores,
            behaviour_normalized=described["normalized_behaviour_score"],
            episode_returns=described["return"],
        )

    def to_dict(self) -> dict:
        ref = self.ref_scores
        return {
            "name": self.name,
            "parts": self.parts,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "env_id": self.env_id,
            "task": self.task,
            "episodes": self.episodes,
            "steps": self.steps,
            "obs_norm": self.obs_norm.to_dict(),
            "ref_scores": None if ref is None else {"min": ref.min, "max": ref.max, "source": ref.source},
            "behaviour_normalized": self.behaviour_normalized,
            "episode_returns": self.episode_returns,
            "view": self.view.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DataInfo:
        """The inverse of to_dict. checkpoint.load_checkpoint has checked the fields every reader needs
        (obs_dim, act_dim, obs_norm); the others may be absent from an older or hand-made checkpoint."""
        ref = d.get("ref_scores")
        return cls(
            name=d.get("name") or "unknown",
            obs_dim=int(d["obs_dim"]),
            act_dim=int(d["act_dim"]),
            obs_norm=ObsNormalizer.from_dict(d["obs_norm"]),
            env_id=d.get("env_id"),
            task=d.get("task"),
            parts=list(d.get("parts") or []),
            episodes=int(d.get("episodes") or 0),
            steps=int(d.get("steps") or 0),
            ref_scores=None if ref is None else RefScores(float(ref["min"]), float(ref["max"]), ref.get("source", "")),
            behaviour_normalized=d.get("behaviour_normalized"),
            episode_returns=_episode_returns(d.get("episode_returns")),
            view=ObservationView.from_dict(d.get("view"), int(d["obs_dim"])),
        )


def _episode_returns(value) -> dict[str, float] | None:
    """The block as saved, or None where it is absent or not four finite numbers (a hand-edited state.json)."""
    keys = ("min", "median", "mean", "max")
    if not isinstance(value, dict) or not all(isinstance(value.get(k), (int, float)) for k in keys):
        return None
    numbers = {k: float(value[k]) for k in keys}
    return numbers if all(math.isfinite(v) for v in numbers.values()) else None
