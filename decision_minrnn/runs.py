"""What a trained run is to everything that uses it: its model rebuilt from a checkpoint, and what acting needs
from its config (the window, the target returns, the mode; the rest is the checkpoint's DataInfo). Evaluation,
`Policy.from_run`, export and the trainer's own evaluations all read a run through here."""

from __future__ import annotations

from pathlib import Path

from .checkpoint import load_checkpoint
from .config import config_from_dict
from .data.info import DataInfo
from .data.scores import default_targets
from .errors import CheckpointError, ConfigError, EnvError, first_line
from .models import build_model
from .rundir import RunDir


def model_from_checkpoint(path, device="cpu"):
    """(Checkpoint, its Config, its DataInfo, the DecisionModel with its weights, in eval mode on device)."""
    ckpt = load_checkpoint(path)
    try:
        cfg = config_from_dict(ckpt.state["config"])
        data = DataInfo.from_dict(ckpt.state["data"])
        model = build_model(cfg, data.obs_dim, data.act_dim)
        model.load_state_dict(ckpt.model)
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{ckpt.path} does not fit this code's model ({first_line(exc)})") from None
    return ckpt, cfg, data, model.to(device).eval()


def best_checkpoint(run_dir) -> Path:
    """RUN/checkpoints/best, written by train.keep_best."""
    path = RunDir(run_dir).best_dir
    if not (path / "state.json").is_file():
        raise CheckpointError(f"{run_dir} has no best checkpoint (it is written when train.keep_best=true)")
    return path


def env_of(data: DataInfo, hint: str = "") -> str:
    """The environment a run acts in, from its data block; a run whose data names none is an EnvError."""
    if not data.env_id:
        raise EnvError(f"the checkpoint's dataset names no environment; set data.env_id{hint}")
    return data.env_id


def acting_window(cfg) -> int:
    """The window a run's policy acts on in window mode: cfg.data.context_len, except that a run trained on whole
    episodes acts on whole episodes (its window is the longest an episode can be)."""
    return cfg.data.max_ep_len if cfg.data.sampler_mode == "episode" else cfg.data.context_len


def eval_targets(cfg, data: DataInfo) -> list[float]:
    """The run's target returns: eval.target_returns, else DT's two per task (data/scores.py)."""
    if cfg.eval.target_returns:
        return list(cfg.eval.target_returns)
    targets = default_targets(data.task)
    if targets is None:
        raise ConfigError(f"no default target returns for task {data.task!r}; set eval.target_returns")
    return list(targets)


def eval_mode(cfg, model) -> str:
    """eval.mode, with auto resolved: recurrent when the backbone can step, else window."""
    if cfg.eval.mode == "auto":
        return "recurrent" if model.recurrent else "window"
    return cfg.eval.mode
