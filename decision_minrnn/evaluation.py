"""Evaluate a saved checkpoint: rebuild the model from safetensors + JSON and roll it out."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .checkpoint import BEST, load_checkpoint
from .config import config_from_dict, validate
from .data.episodes import check_task
from .data.info import DataInfo
from .device import resolve_device
from .envs.evaluate import eval_mode, eval_targets, evaluate_targets, policy_context
from .envs.video import check_encoder
from .errors import CheckpointError, UsageError, first_line
from .models import build_model


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
    path = Path(run_dir) / "checkpoints" / BEST
    if not (path / "state.json").is_file():
        raise CheckpointError(f"{run_dir} has no best checkpoint (it is written when train.keep_best=true)")
    return path


def evaluate_checkpoint(
    path,
    episodes=None,
    mode=None,
    targets=None,
    seed=None,
    device="auto",
    env_id=None,
    max_steps=None,
    video_dir=None,
    compile=False,
    best=False,
) -> dict:
    if video_dir is not None:
        check_encoder()  # fail before any episode runs
        if Path(video_dir).exists() and not Path(video_dir).is_dir():
            raise UsageError(f"--video {video_dir} is a file; give a directory for the mp4s")
    device = resolve_device(device, "--device")
    ckpt, cfg, data, model = model_from_checkpoint(best_checkpoint(path) if best else path, device)
    if env_id:
        check_task(data.name, data.task, env_id, "--env-id")
        data = replace(data, env_id=env_id)
    eval_cfg = replace(
        cfg.eval,
        episodes=episodes if episodes is not None else cfg.eval.episodes,
        mode=mode or cfg.eval.mode,
        target_returns=targets or cfg.eval.target_returns,
        seed=seed if seed is not None else cfg.eval.seed,
        max_steps=max_steps if max_steps is not None else cfg.eval.max_steps,
        final_episodes=0,  # the training's test protocol: --seed picks the episodes here
    )
    if eval_cfg.episodes <= 0:
        raise UsageError("--episodes must be > 0")
    cfg = validate(replace(cfg, eval=eval_cfg))  # --max-steps 0, --seed -1, --target-return inf: one line each
    ctx = policy_context(cfg, data)
    with torch.inference_mode():
        results = evaluate_targets(
            model,
            ctx,
            eval_targets(cfg, data),
            eval_cfg.episodes,
            eval_mode(cfg, model),
            eval_cfg.seed,
            eval_cfg.max_steps,
            device,
            video_dir,
            compile,
        )
    return {
        "checkpoint": str(ckpt.path),
        "step": ckpt.step,
        "env_id": ctx.env_id,
        "backbone": cfg.model.backbone,
        "results": results,
    }
