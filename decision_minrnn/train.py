"""Training: a run (or a group of seeds) from restore-or-initialise to its final evaluation.

Read top to bottom: `train` -> `_train` (check every run directory, load the data, then restore each
run from its checkpoint or initialise it) -> `_loop` (sample, update, log, evaluate, checkpoint).
What it puts together lives next to what it is about: the model (models.build_model), the batches
(data.sampler.training_sampler), DT's update and schedule (update.py: the masked MSE of
kzl/decision-transformer training/seq_trainer.py, AdamW with clipping, lr_at, SeedGroup), the rollouts
(runs: policy_context, eval_targets; envs.evaluate: evaluate_targets) and what a checkpoint keeps of the data
(data.info.DataInfo).
Determinism: the model init, the sampler and dropout all draw from seeded generators whose states are
checkpointed, so a resumed run reaches the same weights as one that was never interrupted.
"""

from __future__ import annotations

import copy
import json
import shutil
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypedDict

import torch

from .checkpoint import BEST, list_checkpoints, load_checkpoint, restore_optimizer, save_checkpoint
from .config import Config, config_from_dict, config_to_dict, save_config
from .data.episodes import load_source
from .data.info import DataInfo
from .data.normalization import ObsNormalizer
from .data.sampler import WindowSampler, training_sampler
from .device import resolve_amp, resolve_device
from .envs.evaluate import TargetResult, evaluate_targets
from .envs.make import check_data_fits_env
from .errors import (
    CheckpointError,
    ConfigError,
    DivergedError,
    Interrupted,
    UsageError,
    first_line,
)
from .loggers import RunLoggers
from .memory import check_training_memory
from .models import DecisionModel, build_model
from .nn.scan import opaque_to_compile
from .rundir import ForceReplace, RunDirLock, check_run_dir, probe_lock
from .runs import eval_mode, eval_targets, policy_context
from .update import SeedGroup, adamw, lr_at


class EvalSummary(TypedDict):
    """The headline of an evaluation: the first target's (DT's higher target), as DT's tables report."""

    target_return: float
    return_mean: float
    normalized_mean: float | None
    normalized_std: float | None
    score_reference: str | None


class RunSummary(TypedDict, total=False):
    """What train() returns and final.json holds (report.py reads it back). eval, eval_all_targets and best
    are present when the run evaluated (and kept a best checkpoint); a run stopped early has step and
    finished only."""

    name: str
    step: int
    finished: bool
    final_loss: float
    backbone: str
    dataset: str  # the data's own name (Minari id, file name, or parts joined with +)
    label: str  # how reports name the dataset: data.label (a grid's dataset label), else dataset
    seed: int
    amp: str  # the precision it trained in (train.amp resolved: none | bf16)
    dropout_impl: str
    behaviour_normalized: float | None
    eval: EvalSummary
    eval_all_targets: list[TargetResult]  # without timing
    # With eval.final_episodes: the test evaluation's episodes and seeds beside the training evaluations'
    # ({"test_episodes", "test_seed", "selection_episodes", "selection_seed"}); eval is then the test score.
    eval_protocol: dict
    # {"step", "score"} of checkpoints/best, score: its training evaluation's headline (what it was selected
    # by); with eval.final_episodes also "test" / "test_all_targets": its score on the test episodes.
    best: dict


class GroupSummary(TypedDict):
    """What train() returns for a seed group (train.seeds): every seed's own RunSummary."""

    name: str
    seeds: dict[int, RunSummary]


def summarize_eval(results: list[TargetResult]) -> EvalSummary:
    first = results[0]
    return {
        "target_return": first["target_return"],
        "return_mean": first["return_mean"],
        "normalized_mean": first.get("normalized_mean"),
        "normalized_std": first.get("normalized_std"),
        "score_reference": first.get("score_reference"),
    }


@dataclass(frozen=True)
class RunPaths:
    """The files of a run directory that the trainer writes besides its checkpoints."""

    root: Path
    config: Path
    metrics: Path
    final: Path
    tensorboard: Path

    @classmethod
    def of(cls, root: Path) -> RunPaths:
        return cls(root, root / "config.yaml", root / "metrics.jsonl", root / "final.json", root / "tb")


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
    stop_at: int | None = None,
    callbacks: list | None = None,
    on_checkpoint: list | None = None,
) -> RunSummary | GroupSummary:
    """Train (or resume) a run; returns the final summary. stop_at: train only up to that step, write a checkpoint
    there and return {"step", "finished": False} without the final evaluation, so that a run longer than one
    sitting (a job time limit, a shared machine) continues later with resume=True.
    callbacks: functions called as fn(step, results) after every evaluation (results: one dict per target
    return, as in metrics.jsonl), e.g. to log elsewhere or to stop early by raising.
    on_checkpoint: functions called as fn(step, run_dir) after every checkpoint is written (e.g. to copy it
    to storage that outlives this machine, as the sweep's --storage does).
    With train.seeds, every seed trains at once into RUN_DIR/seed<N>, a complete run of its own (resumable
    and evaluable alone), and the summary is {"name", "seeds": {seed: that run's summary}}.
    train.threads applies while the run lasts; the caller's torch thread count is restored afterwards."""
    if stop_at is not None and stop_at < 1:
        raise UsageError(f"--stop-at must be a step >= 1, got {stop_at}")
    threads_before = torch.get_num_threads()
    try:
        if not cfg.train.seeds:
            hooks = _Hooks(callbacks or [], on_checkpoint or [])
            return _train([cfg], [Path(run_dir)], resume, force, overrides, progress, stop_at, hooks, False)[0]
        members = [member_config(cfg, seed) for seed in cfg.train.seeds]
        run_dirs = [Path(run_dir) / f"seed{seed}" for seed in cfg.train.seeds]
        hooks = _Hooks(callbacks or [], on_checkpoint or [])
        summaries = _train(members, run_dirs, resume, force, overrides, progress, stop_at, hooks, True)
        return GroupSummary(name=cfg.name, seeds=dict(zip(cfg.train.seeds, summaries)))
    finally:
        torch.set_num_threads(threads_before)


def member_config(cfg: Config, seed: int) -> Config:
    """One seed of a group as the plain single-seed run it is on disk: train.seed set, train.seeds empty."""
    return replace(cfg, name=f"{cfg.name}/seed{seed}", train=replace(cfg.train, seed=seed, seeds=[]))


@dataclass
class _Hooks:
    evaluation: list  # fn(step, results) after every evaluation
    checkpoint: list  # fn(step, run_dir) after every checkpoint


class _StopSignals:
    """SIGINT / SIGTERM during training: finish the current step, write a checkpoint, then stop."""

    def __init__(self, raise_now=None):
        """raise_now: fn(signum) -> the exception to raise at once on a signal (the final evaluation, which
        has its checkpoint already and nothing to finish); None: only record the signal for the loop."""
        self.received = None
        self.previous = {}
        self.raise_now = raise_now

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum
        if self.raise_now is not None:  # nothing to finish first: stop where we are
            raise self.raise_now(signum)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _stopped_message(signum: int, step: int, resume_dir: Path) -> str:
    """The one line of a run stopped by a signal, during training or its final evaluation alike."""
    name = signal.Signals(signum).name
    return f"{name}: stopped at step {step} with a checkpoint; continue with --resume --run-dir {resume_dir}"


def _is_fresh(run_dir: Path) -> bool:
    """Holds nothing but what this attempt wrote before training started (lock, config, an empty tb/)."""
    if not run_dir.is_dir() or run_dir.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        return False
    return {p.name for p in run_dir.iterdir()} <= {".lock", "config.yaml"}


@dataclass
class _Member:
    """One run of the (possibly one-seed) group: its directory, model, data stream and optimizer."""

    cfg: Config
    paths: RunPaths
    ckpt: object  # the checkpoint resumed from, or None
    model: DecisionModel | None = None
    sampler: WindowSampler | None = None
    optimizer: torch.optim.Optimizer | None = None
    replace: ForceReplace | None = None
    lock: RunDirLock | None = None
    index: int = 0  # its place in the caller's list of run directories


def _open_member(cfg: Config, run_dir: Path, resume: bool, force: bool, overrides: list[str] | None, group: bool):
    """Checks and the checkpoint to resume from; returns (member, None) or (None, summary) if it finished."""
    paths = RunPaths.of(run_dir)
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
        seed = cfg.train.seed
        cfg = config_from_dict(ckpt.state["config"], overrides)
        if group:  # the group's train.seeds override is the group's, not this member's
            cfg = replace(cfg, train=replace(cfg.train, seeds=[]))
            if cfg.train.seed != seed:
                raise CheckpointError(f"{paths.root} holds a run of seed {cfg.train.seed}, not of seed {seed}")
    if paths.final.exists() and ckpt is not None and ckpt.step >= cfg.train.steps:
        print(f"run {paths.root} already finished at step {ckpt.step}")
        return None, json.loads(paths.final.read_text())
    return _Member(cfg, paths, ckpt), None


def _check_group(members: list[_Member]) -> None:
    """A group trains in lockstep: one config apart from the seed, and one step to resume from."""
    first = members[0]
    for m in members[1:]:
        if replace(m.cfg, name="", train=replace(m.cfg.train, seed=0)) != replace(
            first.cfg, name="", train=replace(first.cfg.train, seed=0)
        ):
            raise ConfigError(
                f"{m.paths.root} and {first.paths.root} have different settings; a seed group trains one "
                "config (resume the runs one by one)"
            )
    steps = {m.paths.root.name: m.ckpt.step if m.ckpt is not None else 0 for m in members}
    if len(set(steps.values())) > 1:
        listed = ", ".join(f"{name} at {step}" for name, step in steps.items())
        raise CheckpointError(f"the seeds resume from different steps ({listed}); resume them one by one")


def _train(
    cfgs: list[Config],
    run_dirs: list[Path],
    resume: bool,
    force: bool,
    overrides: list[str] | None,
    progress: bool,
    stop_at: int | None,
    hooks: _Hooks,
    group: bool,
) -> list[RunSummary]:
    """group: the runs are the seeds of train.seeds (even just one), in RUN_DIR/seed<N>."""
    members, summaries = [], [None] * len(cfgs)
    for i, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs)):
        member, finished = _open_member(cfg, run_dir, resume, force, overrides, group)
        if member is None:
            summaries[i] = finished
        else:
            member.index = i
            members.append(member)
    if not members:
        return summaries
    _check_group(members)
    cfg, ckpt = members[0].cfg, members[0].ckpt  # what the members share: data, device, evaluation
    if not cfg.data.source:
        raise ConfigError("data.source is empty: name a Minari id or a D4RL hdf5 file")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dataset = load_source(cfg.data.source, cfg.data.env_id, cfg.data.env_version)
    if ckpt is not None:  # the normalizer the run started with, not one refitted on today's copy of the data
        saved = DataInfo.from_dict(ckpt.state["data"])
        if (saved.obs_dim, saved.act_dim) != (dataset.obs_dim, dataset.act_dim):
            raise CheckpointError(
                f"data dims {dataset.obs_dim}/{dataset.act_dim} do not match the checkpoint's "
                f"({saved.obs_dim}, {saved.act_dim})"
            )
        obs_norm = saved.obs_norm
    else:
        obs_norm = ObsNormalizer.fit(dataset.episodes)
    data = DataInfo.of(dataset, obs_norm)
    device = resolve_device(cfg.train.device)
    amp = resolve_amp(cfg.train.amp, device)  # config.yaml, final.json and the hparams record what ran
    for m in members:
        m.cfg = replace(m.cfg, train=replace(m.cfg.train, amp=amp))
    cfg = members[0].cfg
    longest = max(len(e) for e in dataset.episodes)
    context = longest if cfg.data.sampler_mode == "episode" else cfg.data.context_len
    check_training_memory(cfg, dataset.obs_dim, dataset.act_dim, context, models=len(members))
    if dataset.env_id:
        check_data_fits_env(dataset, dataset.env_id)
    ctx, targets = None, None
    if cfg.eval.episodes > 0:  # training alone needs no env
        ctx, targets = policy_context(cfg, data), eval_targets(cfg, data)

    for m in members:
        torch.manual_seed(m.cfg.train.seed)
        m.model = build_model(m.cfg, dataset.obs_dim, dataset.act_dim).to(device)
        m.sampler = training_sampler(m.cfg, dataset, obs_norm)
        m.optimizer = adamw(m.model, m.cfg)
        if m.ckpt is not None:
            try:
                m.model.load_state_dict(m.ckpt.model)
                restore_optimizer(m.optimizer, m.ckpt)
            except (KeyError, RuntimeError, ValueError) as exc:
                raise CheckpointError(
                    f"the overrides do not fit the checkpoint in {m.paths.root} "
                    f"({first_line(exc, 160)}); resume with the run's own model settings"
                ) from None
            m.sampler.set_state(m.ckpt.train["rng.sampler"])
    if ckpt is not None:  # one dropout generator for the whole group: every member's checkpoint holds it
        torch.set_rng_state(ckpt.train["rng.torch"])
        if device.type == "cuda" and "rng.cuda" in ckpt.train:
            torch.cuda.set_rng_state(ckpt.train["rng.cuda"], device)
    start_step = ckpt.step if ckpt is not None else 0

    try:
        for m in members:
            m.replace = ForceReplace(m.paths.root) if force and not resume else None
            m.lock = RunDirLock(m.paths.root)
            m.lock.acquire()  # creates the directory; refused if another process holds it
            # Again under the lock: another process may have written a run here since the first check.
            check_run_dir(m.paths.root, resume, force)
            if m.replace is not None:
                m.replace.begin()
            save_config(m.cfg, m.paths.config)
        resume_dir = run_dirs[0].parent if group else run_dirs[0]
        run = _Run(members, device, data, ctx, targets, start_step, resume_dir)
        for m, summary in zip(members, _loop(run, progress, stop_at, hooks)):
            summaries[m.index] = summary
        return summaries
    except BaseException:
        for m in members:
            if m.replace is not None:
                m.replace.rollback()  # the new run never checkpointed: the old one comes back
            if m.lock is not None and m.lock.file is not None and not resume and _is_fresh(m.paths.root):
                shutil.rmtree(m.paths.root, ignore_errors=True)  # a new run that failed before writing anything
        raise
    finally:
        for m in members:
            if m.lock is not None:
                m.lock.release()


def _without_timing(results: list[TargetResult]) -> list[TargetResult]:
    return [{k: v for k, v in r.items() if k != "timing"} for r in results]  # type: ignore[misc]


def _test_evaluation(member: _Member, summary: RunSummary, ctx, targets, device) -> None:
    """eval.final_episodes episodes per target on the test seeds (eval.test_seed + i), which no training
    evaluation used: the last checkpoint's become the run's score, the best checkpoint's (train.keep_best,
    selected on the training evaluations) its honest score. Both are scored on the same episodes."""
    cfg, model = member.cfg, member.model
    ev = cfg.eval

    def scored(net):
        results = evaluate_targets(
            net, ctx, targets, ev.final_episodes, eval_mode(cfg, net), ev.test_seed, ev.max_steps, device
        )
        return _without_timing(results)

    last = scored(model)
    summary["eval"], summary["eval_all_targets"] = summarize_eval(last), last
    summary["eval_protocol"] = {
        "test_episodes": ev.final_episodes,
        "test_seed": ev.test_seed,
        "selection_episodes": ev.episodes,
        "selection_seed": ev.seed,
    }
    if "best" not in summary:
        return
    best = summary["best"]
    if best["step"] == summary["step"]:  # the best is the last checkpoint: the same rollouts again
        tested = last
    else:
        best_model = copy.deepcopy(model)  # not build_model: that would draw from the checkpointed generator
        best_model.load_state_dict(load_checkpoint(member.paths.root / "checkpoints" / BEST).model)
        tested = scored(best_model)
    best["test"], best["test_all_targets"] = summarize_eval(tested), tested
    model.train()


def _headline(results: list[dict]) -> float:
    """The score keep_best ranks by: the first target's normalized return (its raw return without references)."""
    first = results[0]
    return first["normalized_mean"] if first.get("normalized_mean") is not None else first["return_mean"]


@dataclass
class _Run:
    """Everything the training loop works on, restored or initialised by _train."""

    members: list[_Member]
    device: torch.device
    data: DataInfo
    ctx: object  # PolicyContext, None without evaluation
    targets: list | None
    start_step: int
    resume_dir: Path  # what --resume --run-dir names to continue (a seed group's parent directory)


class _Logged:
    """A member's state that the loop updates: its loggers, checkpoint state and last loss."""

    def __init__(self, member: _Member, start_step: int):
        cfg, ckpt = member.cfg, member.ckpt
        self.loggers = RunLoggers(
            cfg.train.loggers, member.paths.root, config_to_dict(cfg), cfg.name, start_step, cfg.train.wandb_project
        )
        self.loss = float(ckpt.state.get("loss", "nan")) if ckpt is not None else float("nan")
        self.state = {"config": config_to_dict(cfg), "data": None}
        self.state["best"] = ckpt.state.get("best") if ckpt is not None else None  # {"step", "score"} of best/


def _loop(run: _Run, progress: bool, stop_at: int | None, hooks: _Hooks) -> list[RunSummary]:
    members, device, data, ctx, targets = run.members, run.device, run.data, run.ctx, run.targets
    cfg = members[0].cfg  # every setting but the seed is the members' common one (_check_group)
    from tqdm import tqdm

    forward = None
    if cfg.train.compile:  # one member only (config.validate refuses it for a seed group)
        opaque_to_compile()
        forward = torch.compile(members[0].model)
    update = SeedGroup([m.model for m in members], [m.optimizer for m in members], cfg.train.grad_clip, forward)
    logs = [_Logged(m, run.start_step) for m in members]
    for log in logs:
        log.state["data"] = data.to_dict()

    def checkpoint(step):
        for m, log in zip(members, logs):
            log.state["loss"] = log.loss
            save_checkpoint(
                m.paths.root,
                step,
                m.model,
                m.optimizer,
                log.state,
                _rng_state(m.sampler, device),
                keep=cfg.train.keep_checkpoints,
            )
            if m.replace is not None:
                m.replace.commit()  # the new run has started for real: the replaced one can go
            for callback in hooks.checkpoint:
                callback(step, m.paths.root)

    def evaluate(step):
        all_results = []
        for m, log in zip(members, logs):
            model = m.model
            results = evaluate_targets(
                model, ctx, targets, cfg.eval.episodes, eval_mode(cfg, model), cfg.eval.seed, cfg.eval.max_steps, device
            )
            model.train()
            for r in results:
                _append_jsonl(m.paths.metrics, {"step": step, **{k: v for k, v in r.items() if k != "timing"}})
            log.loggers.evaluation(results, step)
            score = _headline(results)
            if cfg.train.keep_best and (log.state["best"] is None or score > log.state["best"]["score"]):
                log.state["best"] = {"step": step, "score": score}
                rng = _rng_state(m.sampler, device)
                save_checkpoint(m.paths.root, step, model, m.optimizer, log.state, rng, name=BEST)
            for callback in hooks.evaluation:
                callback(step, results)
            all_results.append(results)
        return all_results

    def finish_loggers(summaries):
        for log, summary in zip(logs, summaries):
            log.loggers.finish(summary)

    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.amp == "bf16")
    for m in members:
        m.model.train()
    end_step = min(cfg.train.steps, stop_at) if stop_at is not None else cfg.train.steps
    bar = tqdm(
        total=cfg.train.steps,
        initial=run.start_step,
        disable=not progress,
        desc=cfg.name if len(members) == 1 else f"{cfg.name.rsplit('/', 1)[0]} x{len(members)} seeds",
        dynamic_ncols=True,
        mininterval=1.0,
    )
    window_start, window_samples = time.perf_counter(), 0
    with _StopSignals() as signals:
        try:
            for step in range(run.start_step, end_step):
                lr = lr_at(step, cfg)
                for m in members:
                    for group in m.optimizer.param_groups:
                        group["lr"] = lr
                batches = [m.sampler.sample() for m in members]
                if device.type == "cuda":  # pinned host memory lets the copy overlap the previous step's kernels
                    batches = [{k: v.pin_memory().to(device, non_blocking=True) for k, v in b.items()} for b in batches]
                with amp:
                    losses = update.losses(batches)
                done = step + 1
                if not torch.isfinite(losses).all():  # stop before this step touches the weights or a checkpoint
                    bad = [m.paths.root.name for m, ok in zip(members, torch.isfinite(losses).tolist()) if not ok]
                    which = f" ({', '.join(bad)})" if len(members) > 1 else ""
                    raise DivergedError(
                        f"loss became {losses.max().item()}{which} at step {done}; no checkpoint was written "
                        "for it. Lower train.lr or check the data"
                    )
                grad_norms = update.step(losses)
                window_samples += cfg.train.batch_size
                for log, loss in zip(logs, losses.tolist()):
                    log.loss = loss
                if done % cfg.train.log_every == 0 or done == end_step:
                    elapsed = time.perf_counter() - window_start
                    for m, log, grad_norm in zip(members, logs, grad_norms):
                        log.loggers.scalars(
                            {
                                "train/loss": log.loss,
                                "train/lr": m.optimizer.param_groups[0]["lr"],
                                "train/grad_norm": float(grad_norm),
                                "train/samples_per_s": window_samples / max(elapsed, 1e-9),
                            },
                            done,
                        )
                    window_start, window_samples = time.perf_counter(), 0
                    bar.set_postfix(loss=f"{logs[0].loss:.4f}")
                bar.update(1)
                if signals.received is not None:
                    checkpoint(done)
                    raise Interrupted(
                        _stopped_message(signals.received, done, run.resume_dir), exit_code=128 + signals.received
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
            finish_loggers([None] * len(members))
            raise
        finally:
            bar.close()
    if end_step < cfg.train.steps:  # stopped at stop_at on purpose: no final evaluation
        finish_loggers([None] * len(members))
        return [{"step": max(end_step, run.start_step), "finished": False} for _ in members]
    for m in members:
        if m.replace is not None:
            m.replace.commit()  # a resumed-at-the-end run checkpointed nothing new but has started
    summaries = [
        {
            "name": m.cfg.name,
            "step": cfg.train.steps,
            "finished": True,
            "final_loss": log.loss,
            "backbone": cfg.model.backbone,
            "dataset": data.name,
            "label": cfg.data.label or data.name,
            "seed": m.cfg.train.seed,
            "amp": cfg.train.amp,
            "dropout_impl": cfg.model.dropout_impl,
            "behaviour_normalized": data.behaviour_normalized,
        }
        for m, log in zip(members, logs)
    ]

    def stopped(signum):  # the final checkpoint is written: resuming evaluates it again
        return Interrupted(_stopped_message(signum, cfg.train.steps, run.resume_dir), exit_code=128 + signum)

    try:
        if cfg.eval.episodes > 0:
            with _StopSignals(raise_now=stopped):
                results_of_members = evaluate(cfg.train.steps)  # the curve's last point; keep_best ranks it too
                for summary, log, results in zip(summaries, logs, results_of_members):
                    summary["eval"] = summarize_eval(results)
                    summary["eval_all_targets"] = _without_timing(results)
                    if log.state["best"] is not None:
                        summary["best"] = dict(log.state["best"])
                if cfg.eval.final_episodes > 0:
                    for m, summary in zip(members, summaries):
                        _test_evaluation(m, summary, ctx, targets, device)
    except BaseException:
        finish_loggers([None] * len(members))
        raise
    finish_loggers(summaries)
    for m, summary in zip(members, summaries):
        m.paths.final.write_text(json.dumps(summary, indent=1))
    return summaries
