"""The data a run (or a seed group) trains on, loaded once for all its seeds: the dataset in the run's observation
view, its normalizer (fitted on the view; the checkpoint's on resume, not one refitted on today's copy), the
device, and what evaluation needs; with the checks that need the data (episodes against the env, the memory a
step needs at the run's K)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .checkpoint import Checkpoint
from .config import Config
from .data.episodes import OfflineDataset, data_view, load_source, with_view
from .data.info import DataInfo
from .data.normalization import ObsNormalizer
from .data.sampler import training_context
from .envs.make import check_data_fits_env
from .errors import CheckpointError, ConfigError
from .memory import check_training_memory
from .runs import env_of, eval_targets


@dataclass(frozen=True)
class TrainingData:
    """dataset: the episodes as the model sees them; info: what a checkpoint keeps of them; targets: the
    evaluation's target returns (None without evaluation: training alone needs no env)."""

    dataset: OfflineDataset
    info: DataInfo
    device: torch.device
    targets: list[float] | None


def load_training_data(cfg: Config, ckpt: Checkpoint | None, device: torch.device, models: int = 1) -> TrainingData:
    """cfg: the runs' common config (every setting but the seed); ckpt: the first run's checkpoint, or None;
    device: what resume.open_runs resolved; models: how many train at once (the memory check)."""
    if not cfg.data.source:
        raise ConfigError("data.source is empty: name a Minari id or a D4RL hdf5 file")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dataset = load_source(cfg.data.source, cfg.data.env_id, cfg.data.env_version)
    view = data_view(cfg.data.observe, cfg.data.flicker_p, dataset)
    if dataset.env_id:  # the env's full observation: before the view changes the dims
        check_data_fits_env(dataset, dataset.env_id)
    dataset = with_view(dataset, view)
    if ckpt is not None:
        saved = DataInfo.from_dict(ckpt.state["data"])
        if saved.view != view:
            raise CheckpointError(
                f"the checkpoint was trained on the {saved.view.name} view, not {view.name} "
                "(data.observe / data.flicker_p cannot change on resume)"
            )
        if (saved.obs_dim, saved.act_dim) != (dataset.obs_dim, dataset.act_dim):
            raise CheckpointError(
                f"data dims {dataset.obs_dim}/{dataset.act_dim} do not match the checkpoint's "
                f"({saved.obs_dim}, {saved.act_dim})"
            )
        obs_norm = saved.obs_norm
    else:
        obs_norm = ObsNormalizer.fit(dataset.episodes)
    info = DataInfo.of(dataset, obs_norm, view)
    check_training_memory(cfg, dataset.obs_dim, dataset.act_dim, training_context(cfg, dataset), models=models)
    targets = None
    if cfg.eval.episodes > 0:
        env_of(info, hint=" (or eval.episodes=0 to train without evaluations)")
        targets = eval_targets(cfg, info)
    return TrainingData(dataset, info, device, targets)
