"""Training: the Decision Transformer's recipe over any backbone, with TensorBoard, resumable checkpoints
and periodic evaluation.

Loss: MSE between predicted and dataset actions on real (unpadded) positions only, averaged over those
positions and the action dimensions (kzl/decision-transformer gym/decision_transformer/training/seq_trainer.py).
Optimizer: AdamW with DT's linear warmup, gradient-norm clipping.
Determinism: the model init, the sampler and dropout all draw from seeded generators whose states are
checkpointed, so a resumed run reaches the same weights as one that was never interrupted.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import BEST, list_checkpoints, load_checkpoint, restore_optimizer, save_checkpoint
from .config import Config, config_from_dict, config_to_dict, save_config
from .data.episodes import OfflineDataset, load_source
from .data.normalization import ObsNormalizer
from .data.sampler import WindowSampler
from .envs.evaluate import PolicyContext, evaluate_targets
from .envs.scores import RefScores, default_targets
from .errors import CheckpointError, ConfigError, DataError, DivergedError, Interrupted, first_line
from .loggers import RunLoggers
from .memory import check_training_memory
from .models import DecisionModel
from .nn.scan import opaque_to_compile
from .rundir import ForceReplace, RunDirLock, check_run_dir, probe_lock


def resolve_device(name: str, what: str = "train.device") -> torch.device:
    """auto -> CUDA when present, else CPU. `what` names the setting in errors (train.device, --device)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{what}={name!r} is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{what}={name} but no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{what}={name!r}: only cpu and cuda are supported")
    return device


def build_model(cfg: Config, obs_dim: int, act_dim: int) -> DecisionModel:
    return DecisionModel(obs_dim, act_dim, cfg.model, cfg.data.max_ep_len)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real positions: sum over mask / (number of real positions * act_dim)."""
    m = mask.unsqueeze(-1).to(pred.dtype)
    return ((pred.float() - target.float()) ** 2 * m).sum() / (m.sum() * pred.shape[-1]).clamp(min=1.0)


def lr_at(step: int, cfg: Config) -> float:
    """The learning rate of optimizer step `step` (0-based), a pure function of the step so that a resumed
    run needs no scheduler state.

    Warmup is DT's: linear from lr/warmup to lr over warmup_steps (kzl/decision-transformer
    gym/experiment.py, `LambdaLR(lambda steps: min((steps+1)/warmup_steps, 1))`). After it:
    * constant: lr (DT's schedule, what configs/d4rl/ use);
    * cosine: lr -> min_lr along half a cosine (the closed form of torch.optim.lr_scheduler.CosineAnnealingLR
      with T_max = steps - warmup_steps, eta_min = min_lr);
    * linear: lr -> min_lr in a straight line.
    Both reach min_lr at step train.steps, one past the last step taken. Resuming with a larger train.steps
    stretches the rest of the decay.
    """
    t = cfg.train
    if t.warmup_steps > 0 and step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    if t.lr_schedule == "constant":
        return t.lr
    decay_steps = t.steps - t.warmup_steps
    progress = min((step - t.warmup_steps) / decay_steps, 1.0) if decay_steps > 0 else 1.0
    if t.lr_schedule == "cosine":
        return t.min_lr + (t.lr - t.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return t.lr + (t.min_lr - t.lr) * progress


def training_sampler(cfg: Config, dataset: OfflineDataset, obs_norm: ObsNormalizer) -> WindowSampler:
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


def optimizer_step(
    loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float
) -> torch.Tensor:
    """DT's update (kzl/decision-transformer training/trainer.py): backward, clip the gradient norm, step.
    Returns the gradient norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return grad_norm


def data_state(dataset: OfflineDataset, obs_norm: ObsNormalizer) -> dict:
    """Everything derived from the data that evaluation needs; stored in the checkpoint, not the config."""
    ref = dataset.ref_scores
    return {
        "name": dataset.name,
        "parts": dataset.parts or [dataset.name],
        "obs_dim": dataset.obs_dim,
        "act_dim": dataset.act_dim,
        "env_id": dataset.env_id,
        "task": dataset.task,
        "episodes": len(dataset.episodes),
        "steps": dataset.num_steps,
        "obs_norm": obs_norm.to_dict(),
        "ref_scores": None if ref is None else {"min": ref.min, "max": ref.max, "source": ref.source},
        "behaviour_normalized": dataset.describe()["normalized_behaviour_score"],
    }


def policy_context(cfg: Config, data: dict) -> PolicyContext:
    ref = data.get("ref_scores")
    if not data.get("env_id"):
        raise CheckpointError("the checkpoint's dataset names no environment; set data.env_id")
    return PolicyContext(
        env_id=data["env_id"],
        obs_norm=ObsNormalizer.from_dict(data["obs_norm"]),
        rtg_scale=cfg.data.rtg_scale,
        context_len=cfg.data.context_len,
        ref_scores=None if ref is None else RefScores(ref["min"], ref["max"], ref["source"]),
    )


def eval_targets(cfg: Config, data: dict) -> list[float]:
    if cfg.eval.target_returns:
        return list(cfg.eval.target_returns)
    targets = default_targets(data.get("task"))
    if targets is None:
        raise ConfigError(f"no default target returns for task {data.get('task')!r}; set eval.target_returns")
    return list(targets)


def eval_mode(cfg: Config, model: DecisionModel) -> str:
    if cfg.eval.mode == "auto":
        return "recurrent" if model.recurrent else "window"
    return cfg.eval.mode


def summarize_eval(results: list[dict]) -> dict:
    """The headline score is the first target's (DT's higher target), as DT's tables report."""
    first = results[0]
    return {
        "target_return": first["target_return"],
        "return_mean": first["return_mean"],
        "normalized_mean": first.get("normalized_mean"),
        "normalized_std": first.get("normalized_std"),
        "score_reference": first.get("score_reference"),
    }


@dataclass
class RunPaths:
    root: Path

    @property
    def config(self):
        return self.root / "config.yaml"

    @property
    def metrics(self):
        return self.root / "metrics.jsonl"

    @property
    def final(self):
        return self.root / "final.json"

    @property
    def tensorboard(self):
        return self.root / "tb"


def _rng_state(sampler: WindowSampler, device: torch.device) -> dict:
    rng = {"torch": torch.get_rng_state(), "sampler": sampler.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def _append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def train(
    cfg: Config,
    run_dir: str | Path,
    resume: bool = False,
    force: bool = False,
    overrides: list[str] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    callbacks: list | None = None,
) -> dict:
    """Train (or resume) a run; returns the final summary. stop_after: stop early at that step (tests).
    callbacks: functions called as fn(step, results) after every evaluation (results: one dict per target
    return, as in metrics.jsonl), e.g. to log elsewhere or to stop early by raising.
    train.threads applies while the run lasts; the caller's torch thread count is restored afterwards."""
    threads_before = torch.get_num_threads()
    try:
        return _train(cfg, run_dir, resume, force, overrides, progress, stop_after, callbacks or [])
    finally:
        torch.set_num_threads(threads_before)


class _StopSignals:
    """SIGINT / SIGTERM during training: finish the current step, write a checkpoint, then stop."""

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _is_fresh(run_dir: Path) -> bool:
    """Holds nothing but what this attempt wrote before training started (lock, config, an empty tb/)."""
    if not run_dir.is_dir() or run_dir.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        return False
    return {p.name for p in run_dir.iterdir()} <= {".lock", "config.yaml"}


def _check_env_spaces(env_id: str, obs_dim: int, act_dim: int) -> None:
    """The data must fit the environment it will be evaluated in: checked before any training step."""
    import gymnasium as gym

    try:
        env = gym.make(env_id)
    except gym.error.Error as exc:
        raise ConfigError(f"cannot make environment {env_id!r}: {first_line(exc)}") from None
    obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    env.close()
    if obs_shape != (obs_dim,) or act_shape != (act_dim,):
        raise DataError(
            f"the data's obs/act dims {obs_dim}/{act_dim} do not match {env_id}'s spaces "
            f"{obs_shape}/{act_shape}; set data.env_id to the environment the data came from"
        )


def _train(
    cfg: Config,
    run_dir: str | Path,
    resume: bool,
    force: bool,
    overrides: list[str] | None,
    progress: bool,
    stop_after: int | None,
    callbacks: list,
) -> dict:
    paths = RunPaths(Path(run_dir))
    # Everything that can be refused is checked before the run directory is touched.
    probe_lock(paths.root)  # a live run first: its holder is the most useful thing to name
    check_run_dir(paths.root, resume, force)
    ckpt = None
    if resume and list_checkpoints(paths.root):
        ckpt = load_checkpoint(paths.root)
        if "rng.torch" not in ckpt.train or "rng.sampler" not in ckpt.train:
            raise CheckpointError(
                f"{ckpt.path} has no train.safetensors (optimizer and RNG state), so it cannot be "
                "resumed exactly; it still evaluates"
            )
        # The run's own config wins, except what the user overrides now (e.g. more train.steps).
        cfg = config_from_dict(ckpt.state["config"], overrides)
    if paths.final.exists() and ckpt is not None and ckpt.step >= cfg.train.steps:
        print(f"run {paths.root} already finished at step {ckpt.step}")
        return json.loads(paths.final.read_text())
    if not cfg.data.source:
        raise ConfigError("data.source is empty: name a Minari id or a D4RL hdf5 file")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dataset = load_source(cfg.data.source, cfg.data.env_id, cfg.data.env_version)
    if ckpt is not None:
        obs_norm = ObsNormalizer.from_dict(ckpt.state["data"]["obs_norm"])
        dims = (ckpt.state["data"]["obs_dim"], ckpt.state["data"]["act_dim"])
        if dims != (dataset.obs_dim, dataset.act_dim):
            raise CheckpointError(f"data dims {dataset.obs_dim}/{dataset.act_dim} do not match the checkpoint's {dims}")
    else:
        obs_norm = ObsNormalizer.fit(dataset.episodes)
    data = data_state(dataset, obs_norm)
    device = resolve_device(cfg.train.device)
    longest = max(len(e) for e in dataset.episodes)
    check_training_memory(
        cfg, dataset.obs_dim, dataset.act_dim, longest if cfg.data.sampler_mode == "episode" else cfg.data.context_len
    )
    if dataset.env_id:
        _check_env_spaces(dataset.env_id, dataset.obs_dim, dataset.act_dim)
    ctx, targets = None, None
    if cfg.eval.episodes > 0:  # training alone needs no env
        ctx, targets = policy_context(cfg, data), eval_targets(cfg, data)

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, dataset.obs_dim, dataset.act_dim).to(device)
    sampler = training_sampler(cfg, dataset, obs_norm)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr_at(0, cfg), weight_decay=cfg.train.weight_decay)
    start_step = 0
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt.model)
            restore_optimizer(optimizer, ckpt)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"the overrides do not fit the checkpoint in {paths.root} "
                f"({first_line(exc, 160)}); resume with the run's own model settings"
            ) from None
        torch.set_rng_state(ckpt.train["rng.torch"])
        sampler.set_state(ckpt.train["rng.sampler"])
        if device.type == "cuda" and "rng.cuda" in ckpt.train:
            torch.cuda.set_rng_state(ckpt.train["rng.cuda"], device)
        start_step = ckpt.step

    replace = ForceReplace(paths.root) if force and not resume else None
    lock = RunDirLock(paths.root)
    lock.acquire()  # creates the directory; refused if another process holds it
    try:
        # Again under the lock: another process may have written a run here since the first check.
        check_run_dir(paths.root, resume, force)
        if replace is not None:
            replace.begin()
        save_config(cfg, paths.config)
        run = _Run(cfg, paths, model, sampler, optimizer, device, data, ctx, targets, start_step, ckpt, replace)
        return _loop(run, progress, stop_after, callbacks)
    except BaseException:
        if replace is not None:
            replace.rollback()  # the new run never checkpointed: the old one comes back
        if not resume and _is_fresh(paths.root):
            shutil.rmtree(paths.root, ignore_errors=True)  # a new run that failed before writing anything
        raise
    finally:
        lock.release()


def _headline(results: list[dict]) -> float:
    """The score keep_best ranks by: the first target's normalized return (its raw return without references)."""
    first = results[0]
    return first["normalized_mean"] if first.get("normalized_mean") is not None else first["return_mean"]


@dataclass
class _Run:
    """Everything the training loop works on, restored or initialised by _train."""

    cfg: Config
    paths: RunPaths
    model: DecisionModel
    sampler: WindowSampler
    optimizer: torch.optim.Optimizer
    device: torch.device
    data: dict
    ctx: object  # PolicyContext, None without evaluation
    targets: list | None
    start_step: int
    ckpt: object  # the checkpoint resumed from, or None
    replace: ForceReplace | None


def _loop(run: _Run, progress: bool, stop_after: int | None, callbacks: list) -> dict:
    cfg, paths, model, sampler, optimizer, device = (
        run.cfg,
        run.paths,
        run.model,
        run.sampler,
        run.optimizer,
        run.device,
    )
    data, ctx, targets, start_step, ckpt, replace = (
        run.data,
        run.ctx,
        run.targets,
        run.start_step,
        run.ckpt,
        run.replace,
    )
    from tqdm import tqdm

    if cfg.train.compile:
        opaque_to_compile()
    forward = torch.compile(model) if cfg.train.compile else model
    state = {"config": config_to_dict(cfg), "data": data}
    loss_value = float(ckpt.state.get("loss", "nan")) if ckpt is not None else float("nan")
    state["best"] = ckpt.state.get("best") if ckpt is not None else None  # {"step", "score"} of checkpoints/best

    def checkpoint(step):
        state["loss"] = loss_value
        save_checkpoint(
            paths.root, step, model, optimizer, state, _rng_state(sampler, device), keep=cfg.train.keep_checkpoints
        )
        if replace is not None:
            replace.commit()  # the new run has started for real: the replaced one can go

    def evaluate(step):
        results = evaluate_targets(
            model, ctx, targets, cfg.eval.episodes, eval_mode(cfg, model), cfg.eval.seed, cfg.eval.max_steps, device
        )
        model.train()
        for r in results:
            _append_jsonl(paths.metrics, {"step": step, **{k: v for k, v in r.items() if k != "timing"}})
        loggers.evaluation(results, step)
        score = _headline(results)
        if cfg.train.keep_best and (state["best"] is None or score > state["best"]["score"]):
            state["best"] = {"step": step, "score": score}
            save_checkpoint(paths.root, step, model, optimizer, state, _rng_state(sampler, device), name=BEST)
        for callback in callbacks:
            callback(step, results)
        return results

    loggers = RunLoggers(
        cfg.train.loggers, paths.root, config_to_dict(cfg), cfg.name, start_step, cfg.train.wandb_project
    )
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.amp == "bf16")
    model.train()
    end_step = min(cfg.train.steps, stop_after) if stop_after is not None else cfg.train.steps
    bar = tqdm(
        total=cfg.train.steps,
        initial=start_step,
        disable=not progress,
        desc=cfg.name,
        dynamic_ncols=True,
        mininterval=1.0,
    )
    window_start, window_samples = time.perf_counter(), 0
    with _StopSignals() as signals:
        try:
            for step in range(start_step, end_step):
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, cfg)
                batch = sampler.sample()
                if device.type == "cuda":  # pinned host memory lets the copy overlap the previous step's kernels
                    batch = {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
                with amp:
                    pred = forward(batch)
                loss = masked_mse(pred, batch["act"], batch["mask"])
                done = step + 1
                if not torch.isfinite(loss):  # stop before this step touches the weights or a checkpoint
                    raise DivergedError(
                        f"loss became {loss.item()} at step {done}; no checkpoint was written for "
                        "it. Lower train.lr or check the data"
                    )
                grad_norm = optimizer_step(loss, model, optimizer, cfg.train.grad_clip)
                window_samples += cfg.train.batch_size
                loss_value = loss.item()
                if done % cfg.train.log_every == 0 or done == end_step:
                    elapsed = time.perf_counter() - window_start
                    loggers.scalars(
                        {
                            "train/loss": loss_value,
                            "train/lr": optimizer.param_groups[0]["lr"],
                            "train/grad_norm": float(grad_norm),
                            "train/samples_per_s": window_samples / max(elapsed, 1e-9),
                        },
                        done,
                    )
                    window_start, window_samples = time.perf_counter(), 0
                    bar.set_postfix(loss=f"{loss_value:.4f}")
                bar.update(1)
                if signals.received is not None:
                    checkpoint(done)
                    name = signal.Signals(signals.received).name
                    raise Interrupted(
                        f"{name}: stopped at step {done} with a checkpoint; continue with "
                        f"--resume --run-dir {paths.root}",
                        exit_code=128 + signals.received,
                    )
                if (
                    cfg.train.eval_every
                    and done % cfg.train.eval_every == 0
                    and done < cfg.train.steps
                    and cfg.eval.episodes > 0
                ):
                    evaluate(done)
                if done % cfg.train.checkpoint_every == 0 or done == end_step:
                    checkpoint(done)
        except BaseException:
            loggers.finish(None)
            raise
        finally:
            bar.close()
    if end_step < cfg.train.steps:  # stopped early on purpose (tests): no final evaluation
        loggers.finish(None)
        return {"step": end_step, "finished": False}
    if replace is not None:
        replace.commit()  # a resumed-at-the-end run checkpointed nothing new but has started
    summary = {
        "name": cfg.name,
        "step": cfg.train.steps,
        "finished": True,
        "final_loss": loss_value,
        "backbone": cfg.model.backbone,
        "dataset": data["name"],
        "seed": cfg.train.seed,
        "behaviour_normalized": data.get("behaviour_normalized"),
    }
    try:
        if cfg.eval.episodes > 0:
            results = evaluate(cfg.train.steps)
            summary["eval"] = summarize_eval(results)
            summary["eval_all_targets"] = [{k: v for k, v in r.items() if k != "timing"} for r in results]
            if state["best"] is not None:
                summary["best"] = state["best"]
    except BaseException:
        loggers.finish(None)
        raise
    loggers.finish(summary)
    paths.final.write_text(json.dumps(summary, indent=1))
    return summary
