"""Evaluate a saved checkpoint: rebuild the model from safetensors + JSON and roll it out, at the run's
target returns or over a sweep of them (DT's Figure 4: achieved against target return)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .config import validate
from .data.episodes import check_task
from .data.info import DataInfo
from .device import resolve_device
from .envs.video import check_encoder
from .errors import UsageError
from .rollout import evaluate_targets
from .rundir import RunDir, earlier_output, write_atomic
from .runs import best_checkpoint, eval_mode, eval_targets, model_from_checkpoint


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
    target_sweep=None,
    target_range=None,
) -> dict:
    """targets: raw target returns, or names of the data's own (DATA_TARGETS: "best-episode", ...);
    target_sweep: N targets from the data's median episode return to SWEEP_TOP x its best one (target_range:
    (low, high) instead); the result then holds "target_sweep" (the range and the data's references)."""
    if target_sweep is not None and targets:
        raise UsageError("--target-sweep picks the target returns itself; drop --target-return")
    if target_range is not None and target_sweep is None:
        raise UsageError("--target-range sets the range of --target-sweep; give --target-sweep N too")
    if video_dir is not None:
        check_encoder()  # fail before any episode runs
        if Path(video_dir).exists() and not Path(video_dir).is_dir():
            raise UsageError(f"--video {video_dir} is a file; give a directory for the mp4s")
    device = resolve_device(device, "--device")
    ckpt, cfg, data, model = model_from_checkpoint(best_checkpoint(path) if best else path, device)
    targets = resolve_targets(targets, data)
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
    sweep = None
    if target_sweep is not None:
        sweep = sweep_range(data, target_sweep, target_range)
        cfg = replace(cfg, eval=replace(cfg.eval, target_returns=sweep["targets"]))
    with torch.inference_mode():
        results = evaluate_targets(
            model,
            cfg,
            data,
            eval_targets(cfg, data),
            eval_cfg.episodes,
            eval_mode(cfg, model),
            eval_cfg.seed,
            eval_cfg.max_steps,
            device,
            video_dir,
            compile,
        )
    out = {
        "checkpoint": str(ckpt.path),
        "step": ckpt.step,
        "env_id": data.env_id,
        "backbone": cfg.model.backbone,
        "results": results,
    }
    if sweep is not None:
        ref = data.ref_scores
        for r in results:
            r["target_normalized"] = None if ref is None else float(ref.normalize(r["target_return"]))
        returns = data.episode_returns or {}
        out["target_sweep"] = {
            **sweep,
            "best_checkpoint": bool(best),
            "episodes": eval_cfg.episodes,
            "seed": eval_cfg.seed,
            "dataset": data.name,
            "label": cfg.data.label or data.name,
            "train_seed": cfg.train.seed,
            "behaviour_normalized": data.behaviour_normalized,
            "episode_returns": data.episode_returns,
            "episode_returns_normalized": None
            if ref is None or not returns
            else {k: float(ref.normalize(v)) for k, v in returns.items()},
            "score_reference": None if ref is None else ref.source,
        }
    return out


SWEEP_TOP = 1.5  # past the data's best episode: where conditioning stops being imitation (DT's Figure 4)

# Target returns named by the data instead of a number (--target-return best-episode): DT's fixed targets
# can lie several times past a dataset's best episode, where no backbone follows them any more, and the
# target sweeps of docs/results.md section 5f mostly peak near the best episode.
DATA_TARGETS = {"best-episode": "max", "median-episode": "median", "mean-episode": "mean"}


def resolve_targets(targets, data: DataInfo) -> list[float] | None:
    """Raw target returns: numbers as given (text is parsed), each DATA_TARGETS name replaced by that statistic
    of the data's episode returns. A word that is neither, or a name the checkpoint cannot resolve, is one
    UsageError line."""
    if not targets:
        return targets
    resolved = []
    for target in targets:
        if isinstance(target, str) and target in DATA_TARGETS:
            if data.episode_returns is None:
                raise UsageError(
                    f"--target-return {target}: this checkpoint does not record its data's episode returns "
                    "(written before they were kept); give the return as a number"
                )
            resolved.append(float(data.episode_returns[DATA_TARGETS[target]]))
            continue
        try:
            resolved.append(float(target))
        except ValueError:
            raise UsageError(f"--target-return {target}: give a return or one of {', '.join(DATA_TARGETS)}") from None
    return resolved


def sweep_range(data: DataInfo, n: int, target_range=None) -> dict:
    """{"targets", "range", "range_from"}: n raw target returns, evenly spaced over [low, high]: by default from
    the data's median episode return to SWEEP_TOP x its best one, as DT's Figure 4 spans the data's returns and
    beyond them."""
    if n < 2:
        raise UsageError(f"--target-sweep needs at least 2 target returns, got {n}")
    if target_range is not None:
        low, high = (float(x) for x in target_range)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise UsageError(f"--target-range {low:g} {high:g}: give two finite returns, low < high")
        source = "--target-range"
    else:
        if data.episode_returns is None:
            raise UsageError(
                "this checkpoint does not record its data's episode returns (written before they were kept); "
                "give the sweep's range with --target-range LOW HIGH"
            )
        low, high = data.episode_returns["median"], SWEEP_TOP * data.episode_returns["max"]
        if not low < high:
            raise UsageError(
                f"the data's median episode return {low:g} is not below {SWEEP_TOP} x its best {high:g}; "
                "give the sweep's range with --target-range LOW HIGH"
            )
        source = f"data: median episode return to {SWEEP_TOP} x the best"
    return {"targets": [float(t) for t in np.linspace(low, high, n)], "range": [low, high], "range_from": source}


def sweep_file(checkpoint_arg, best: bool) -> Path:
    """Where evaluate --target-sweep writes by default: in the run directory, beside final.json."""
    path = Path(checkpoint_arg)
    run_dir = path.parent.parent if (path / "state.json").is_file() else path  # a checkpoint dir or a run dir
    return RunDir(run_dir).sweep(best)


def check_sweep_out(out: Path, force: bool) -> None:
    """An existing file is replaced only with --force, and only if an earlier target sweep wrote it."""
    present, ours = earlier_output([out], out, lambda doc: "target_sweep" in doc)
    if not present:
        if not out.parent.is_dir():
            raise UsageError(f"--sweep-out {out}: directory {out.parent} does not exist")
        return
    if not force:
        raise UsageError(f"{out} already exists; pass --force to replace an earlier target sweep")
    if not ours:
        raise UsageError(f"--force refused: {out} is not an earlier target sweep; nothing was replaced")


def write_sweep(out: Path, result: dict) -> None:
    """Atomically: a reader never sees half a file, and a failed write leaves the earlier one."""
    write_atomic(out, json.dumps(result, indent=1))
