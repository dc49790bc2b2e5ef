"""Training: a run (or a group of seeds) from restore-or-initialise to its final evaluation.

Read top to bottom, as the work happens:
1. `train`: one run, or the seeds of train.seeds, each into a run directory of its own;
2. opening the runs (`_open_runs`): every check that can refuse, and the checkpoint to resume from, before
   any directory is touched;
3. the data (`_load_data`), once for all seeds: the dataset, its normalizer (the checkpoint's on resume),
   the device, the memory and data-vs-env checks, and what evaluation needs;
4. the members (`_build_members`): each seed's model, sampler and optimizer, initialised or restored;
5. the loop (`_Loop`), inside the run directories' transaction (rundir.RunDirTransaction: locks, --force's
   move-aside and rollback): sample, update, log, evaluate, checkpoint; then the final evaluation and
   final.json.
What it puts together lives next to what it is about: the model (models.build_model), the batches
(data.sampler.training_sampler), DT's update and schedule (update.py: the masked MSE of
kzl/decision-transformer training/seq_trainer.py, AdamW with clipping, lr_at, SeedGroup: one vmapped step
for a seed group, a plain step for one run), the rollouts (runs: eval_targets;
rollout: evaluate_targets) and what a checkpoint keeps of the data (data.info.DataInfo).
Determinism: the model init, the sampler and dropout all draw from seeded generators whose states are
checkpointed, so a resumed run reaches the same weights as one that was never interrupted.
"""

from __future__ import annotations

import copy
import json
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypedDict

import torch
from tqdm import tqdm

from .checkpoint import load_checkpoint, restore_optimizer, save_checkpoint
from .config import Config, config_from_dict, config_to_dict, resume_changes, save_config
from .data.episodes import OfflineDataset, data_view, load_source, with_view
from .data.info import DataInfo
from .data.normalization import ObsNormalizer
from .data.sampler import WindowSampler, training_sampler
from .device import amp_reason, resolve_amp, resolve_device
from .envs.make import check_data_fits_env
from .errors import CheckpointError, ConfigError, DivergedError, EnvError, Interrupted, UsageError, first_line
from .loggers import RunLoggers
from .memory import check_training_memory
from .models import DecisionModel, build_model
from .nn.scan import opaque_to_compile
from .rollout import TargetResult, evaluate_targets, without_timing
from .rundir import RunDir, RunDirTransaction, check_run_dir, probe_lock, write_atomic
from .runs import eval_mode, eval_targets
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
    observe: str  # data.observe: full | positions | velocities | flicker
    behaviour_normalized: float | None
    eval: EvalSummary
    eval_all_targets: list[TargetResult]  # without timing
    # With eval.final_episodes: the test evaluation's episodes and seeds beside the training evaluations'
    # ({"test_episodes", "test_seed", "selection_episodes", "selection_seed"}); eval is then the test score.
    eval_protocol: dict
    # Summed over resumes: real (unpadded) timesteps trained on; seconds in updates; the loop's wall seconds
    # with its evaluations and checkpoints (this machine's: compare runs of one machine only).
    timesteps: int
    train_seconds: float
    wall_seconds: float
    # {"step", "score"} of checkpoints/best, score: its training evaluation's headline (what it was selected
    # by); with eval.final_episodes also "test" / "test_all_targets": its score on the test episodes.
    best: dict


class GroupSummary(TypedDict):
    """What train() returns for a seed group (train.seeds): every seed's own RunSummary."""

    name: str
    seeds: dict[int, RunSummary]


# ----- 1. train ----------------------------------------------------------------------------------------------


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
    hooks = _Hooks(callbacks or [], on_checkpoint or [])
    group = bool(cfg.train.seeds)
    cfgs = [member_config(cfg, seed) for seed in cfg.train.seeds] if group else [cfg]
    run_dirs = [RunDir(run_dir).member(seed).root for seed in cfg.train.seeds] if group else [Path(run_dir)]
    threads_before = torch.get_num_threads()
    try:
        summaries = _train_runs(cfgs, run_dirs, _Options(resume, force, overrides, progress, stop_at, group), hooks)
    finally:
        torch.set_num_threads(threads_before)
    if group:
        return GroupSummary(name=cfg.name, seeds=dict(zip(cfg.train.seeds, summaries)))
    return summaries[0]


def member_config(cfg: Config, seed: int) -> Config:
    """One seed of a group as the plain single-seed run it is on disk: train.seed set, train.seeds empty."""
    return replace(cfg, name=f"{cfg.name}/seed{seed}", train=replace(cfg.train, seed=seed, seeds=[]))


@dataclass(frozen=True)
class _Options:
    """How train() was asked to run, the same for every member."""

    resume: bool
    force: bool
    overrides: list[str] | None
    progress: bool
    stop_at: int | None
    group: bool  # the runs are the seeds of train.seeds (even just one), in RUN_DIR/seed<N>


@dataclass
class _Hooks:
    evaluation: list  # fn(step, results) after every evaluation
    checkpoint: list  # fn(step, run_dir) after every checkpoint


def _train_runs(cfgs: list[Config], run_dirs: list[Path], opts: _Options, hooks: _Hooks) -> list[RunSummary]:
    """Open every run; load the data and build the members of those still to train; train them in lockstep."""
    members, summaries = _open_runs(cfgs, run_dirs, opts)
    if not members:
        return summaries
    data = _load_data(members)
    start_step = _build_members(members, data)
    if opts.progress:
        print(start_line(members, data, start_step), flush=True)
    resume_dir = run_dirs[0].parent if opts.group else run_dirs[0]
    with RunDirTransaction([m.paths.root for m in members], opts.resume, opts.force) as run_dirs_held:
        for m in members:
            save_config(m.cfg, m.paths.config)
        loop = _Loop(members, data, start_step, resume_dir, hooks, run_dirs_held)
        for m, summary in zip(members, loop.run(opts.progress, opts.stop_at)):
            summaries[m.index] = summary
    return summaries


# ----- 2. opening the runs -----------------------------------------------------------------------------------


@dataclass
class _Member:
    """One run of the (possibly one-seed) group: its directory, model, data stream and optimizer."""

    cfg: Config
    paths: RunDir
    ckpt: object  # the checkpoint resumed from, or None
    index: int  # its place in the caller's list of run directories
    model: DecisionModel | None = None
    sampler: WindowSampler | None = None
    optimizer: torch.optim.Optimizer | None = None


def _open_runs(cfgs: list[Config], run_dirs: list[Path], opts: _Options) -> tuple[list[_Member], list]:
    """(the members still to train, every run's summary slot: filled for runs that had finished already)."""
    members, summaries = [], [None] * len(cfgs)
    for i, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs)):
        member, finished = _open_member(cfg, run_dir, i, opts)
        if member is None:
            summaries[i] = finished
        else:
            members.append(member)
    if members:
        _check_group(members)
    return members, summaries


def _open_member(cfg: Config, run_dir: Path, index: int, opts: _Options):
    """Checks and the checkpoint to resume from; returns (member, None) or (None, summary) if it finished."""
    paths = RunDir(run_dir)
    # Everything that can be refused is checked before the run directory is touched.
    probe_lock(paths.root)  # a live run first: its holder is the most useful thing to name
    check_run_dir(paths.root, opts.resume, opts.force)
    ckpt = None
    if opts.resume and paths.has_checkpoint:
        ckpt = load_checkpoint(paths.root)
        if "rng.torch" not in ckpt.train or "rng.sampler" not in ckpt.train:
            raise CheckpointError(
                f"{ckpt.path} has no train.safetensors (optimizer and RNG state), so it cannot be "
                "resumed exactly; it still evaluates"
            )
        # The run's own config wins, except what the user overrides now and a resume may change (more
        # train.steps, evaluation and logging settings: config.RESUME_MAY_CHANGE).
        seed = cfg.train.seed
        saved = config_from_dict(ckpt.state["config"])
        cfg = config_from_dict(ckpt.state["config"], opts.overrides)
        if opts.group:  # the group's train.seeds override is the group's, not this member's
            cfg = replace(cfg, train=replace(cfg.train, seeds=[]))
        amp = resolve_amp(cfg.train.amp, resolve_device(cfg.train.device))
        changed = resume_changes(saved, cfg, amp)
        if changed:
            raise ConfigError(
                f"--resume cannot change {', '.join(changed)}: it changes what {paths.root} trained. A resume may "
                "change eval.*, train.steps, the logging and checkpoint cadence, train.device and train.threads; "
                "for other settings start a new run (--run-dir NEW)"
            )
            if cfg.train.seed != seed:
                raise CheckpointError(f"{paths.root} holds a run of seed {cfg.train.seed}, not of seed {seed}")
    if paths.final.exists() and ckpt is not None and ckpt.step >= cfg.train.steps:
        print(f"run {paths.root} already finished at step {ckpt.step}")
        return None, json.loads(paths.final.read_text())
    return _Member(cfg, paths, ckpt, index), None


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


# ----- 3. the data -------------------------------------------------------------------------------------------


@dataclass
class _Data:
    """What the members share: the dataset and what a checkpoint keeps of it, the device, and what evaluation
    needs (targets: None without evaluation; training alone needs no env)."""

    dataset: OfflineDataset
    info: DataInfo
    device: torch.device
    targets: list[float] | None
    precision: str = ""  # what train.amp resolved to here, and why (device.amp_reason), for the start line


def _load_data(members: list[_Member]) -> _Data:
    cfg, ckpt = members[0].cfg, members[0].ckpt  # every setting but the seed is the members' common one
    if not cfg.data.source:
        raise ConfigError("data.source is empty: name a Minari id or a D4RL hdf5 file")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dataset = load_source(cfg.data.source, cfg.data.env_id, cfg.data.env_version)
    view = data_view(cfg.data.observe, cfg.data.flicker_p, dataset)
    if dataset.env_id:  # the env's full observation: before the view changes the dims
        check_data_fits_env(dataset, dataset.env_id)
    dataset = with_view(dataset, view)  # the normalizer is fitted on the view, as the model sees it
    if ckpt is not None:  # the normalizer the run started with, not one refitted on today's copy of the data
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
    device = resolve_device(cfg.train.device)
    precision = amp_reason(cfg.train.amp, device)
    amp = resolve_amp(cfg.train.amp, device)  # config.yaml, final.json and the hparams record what ran
    for m in members:
        m.cfg = replace(m.cfg, train=replace(m.cfg.train, amp=amp))
    cfg = members[0].cfg
    longest = max(len(e) for e in dataset.episodes)
    context = longest if cfg.data.sampler_mode == "episode" else cfg.data.context_len
    check_training_memory(cfg, dataset.obs_dim, dataset.act_dim, context, models=len(members))
    targets = None
    if cfg.eval.episodes > 0:
        if not info.env_id:
            raise EnvError("the dataset names no environment to evaluate in; set data.env_id (or eval.episodes=0)")
        targets = eval_targets(cfg, info)
    return _Data(dataset, info, device, targets, precision)


def start_line(members: list[_Member], data: _Data, start_step: int) -> str:
    """What the run is about to do, before its first step: where, on what data, for how long, on what."""
    cfg, info = members[0].cfg, data.info
    where = members[0].paths.root if len(members) == 1 else members[0].paths.root.parent
    view = "" if info.view.name == "full" else f", {info.view.name} view"
    batches = "whole episodes" if cfg.data.sampler_mode == "episode" else f"K={cfg.data.context_len}"
    seeds = f", seeds {[m.cfg.train.seed for m in members]}" if len(members) > 1 else ""
    begin = f"from step {start_step} " if start_step else ""
    evaluation = (
        "no evaluation"
        if cfg.eval.episodes == 0
        else (f"evaluating every {cfg.train.eval_every} steps" if cfg.train.eval_every else "evaluating at the end")
    )
    return (
        f"train {where}: {cfg.model.backbone} ({cfg.model.token_layout} tokens) on {info.name} ({info.episodes} "
        f"episodes, {info.steps} steps{view}), {begin}to step {cfg.train.steps}, batch {cfg.train.batch_size} "
        f"({batches}){seeds}, {evaluation}; {data.device.type}, {data.precision}"
    )


# ----- 4. the members ----------------------------------------------------------------------------------------


def _build_members(members: list[_Member], data: _Data) -> int:
    """Each member's model, sampler and optimizer, from its seed or its checkpoint; returns the step to
    start from."""
    dataset = data.dataset
    for m in members:
        torch.manual_seed(m.cfg.train.seed)
        m.model = build_model(m.cfg, dataset.obs_dim, dataset.act_dim).to(data.device)
        m.sampler = training_sampler(m.cfg, dataset, data.info.obs_norm)
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
    ckpt = members[0].ckpt
    if ckpt is None:
        return 0
    # One dropout generator for the whole group: every member's checkpoint holds it.
    torch.set_rng_state(ckpt.train["rng.torch"])
    if data.device.type == "cuda" and "rng.cuda" in ckpt.train:
        torch.cuda.set_rng_state(ckpt.train["rng.cuda"], data.device)
    return ckpt.step


# ----- 5. the loop -------------------------------------------------------------------------------------------


ETA_AFTER = 20  # steps timed before the first ETA line


class _MemberLog:
    """What the loop keeps of one member between steps: its loggers, the state its checkpoints carry (config,
    data, best) and its last loss."""

    def __init__(self, member: _Member, start_step: int, data: DataInfo):
        cfg, ckpt = member.cfg, member.ckpt
        self.loggers = RunLoggers(
            cfg.train.loggers, member.paths.root, config_to_dict(cfg), cfg.name, start_step, cfg.train.wandb_project
        )
        self.loss = float(ckpt.state.get("loss", "nan")) if ckpt is not None else float("nan")
        # Summed over resumes (kept in every checkpoint): the real (unpadded) timesteps trained on, the seconds
        # spent in updates, and the loop's wall seconds with its evaluations and checkpoints.
        saved = ckpt.state if ckpt is not None else {}
        self.timesteps = int(saved.get("timesteps", 0))
        self.train_seconds = float(saved.get("train_seconds", 0.0))
        self.wall_seconds = float(saved.get("wall_seconds", 0.0))
        self.state = {"config": config_to_dict(cfg), "data": data.to_dict()}
        self.state["best"] = ckpt.state.get("best") if ckpt is not None else None  # {"step", "score"} of best/


class _Loop:
    """The members' lockstep from start_step to the end: one SeedGroup update per step, then logging,
    evaluation and checkpoints on their schedules; then the final evaluation."""

    def __init__(self, members, data: _Data, start_step: int, resume_dir: Path, hooks: _Hooks, run_dirs):
        self.members, self.data, self.start_step, self.resume_dir = members, data, start_step, resume_dir
        self.hooks, self.run_dirs = hooks, run_dirs
        self.cfg = cfg = members[0].cfg
        forward = None
        if cfg.train.compile:  # one member only (config.validate refuses it for a seed group)
            opaque_to_compile()
            forward = torch.compile(members[0].model)
        self.update = SeedGroup(
            [m.model for m in members], [m.optimizer for m in members], cfg.train.grad_clip, forward
        )
        self.logs = [_MemberLog(m, start_step, data.info) for m in members]
        self.amp = torch.autocast(data.device.type, dtype=torch.bfloat16, enabled=cfg.train.amp == "bf16")
        self.window_start, self.window_samples = time.perf_counter(), 0
        self.wall_mark = time.perf_counter()  # wall_seconds: counted up to each checkpoint and to final.json
        self.seconds_before = self.logs[0].train_seconds  # a resumed run's earlier sittings: not in its ETA

    def run(self, progress: bool, stop_at: int | None) -> list[RunSummary]:
        cfg, members = self.cfg, self.members
        end_step = min(cfg.train.steps, stop_at) if stop_at is not None else cfg.train.steps
        for m in members:
            m.model.train()
        bar = tqdm(
            total=cfg.train.steps,
            initial=self.start_step,
            disable=not progress,
            desc=cfg.name if len(members) == 1 else f"{cfg.name.rsplit('/', 1)[0]} x{len(members)} seeds",
            dynamic_ncols=True,
            mininterval=1.0,
        )
        with _StopSignals() as signals:
            try:
                for step in range(self.start_step, end_step):
                    done = step + 1
                    started = time.perf_counter()
                    grad_norms = self.train_step(step)
                    self.add_seconds(time.perf_counter() - started, "train_seconds")
                    if done % cfg.train.log_every == 0 or done == end_step:
                        self.log(done, grad_norms)
                        bar.set_postfix(loss=f"{self.logs[0].loss:.4f}")
                    bar.update(1)
                    if progress and done == self.start_step + ETA_AFTER < end_step:
                        tqdm.write(self.eta_line(done, end_step))
                    if signals.received is not None:
                        self.checkpoint(done)
                        raise self.stopped(signals.received, done)
                    evaluates = cfg.train.eval_every and done % cfg.train.eval_every == 0
                    if evaluates and done < cfg.train.steps and cfg.eval.episodes > 0:
                        self.evaluate(done)
                    if done % cfg.train.checkpoint_every == 0 or done == end_step:
                        self.checkpoint(done)
            except BaseException:
                self.finish_loggers([None] * len(members))
                raise
            finally:
                bar.close()
        if end_step < cfg.train.steps:  # stopped at stop_at on purpose: no final evaluation
            self.finish_loggers([None] * len(members))
            return [{"step": max(end_step, self.start_step), "finished": False} for _ in members]
        self.run_dirs.started()  # a resumed-at-the-end run checkpointed nothing new but has started
        return self.finish()

    def eta_line(self, done: int, end_step: int) -> str:
        """The first estimate of the training time left, once ETA_AFTER steps are timed (the start line says
        what the run is; this, how long its updates will take; evaluations come on top)."""
        timed = (self.logs[0].train_seconds - self.seconds_before) * len(self.logs)
        per_step = timed / max(1, done - self.start_step)
        left = per_step * (end_step - done)
        return f"ETA: about {left / 60:.1f} min of training left ({1e3 * per_step:.0f} ms a step), evaluations extra"

    def train_step(self, step: int) -> list:
        """One update of every member at this step's learning rate; returns the gradient norms (pre-clip)."""
        lr = lr_at(step, self.cfg)
        for m in self.members:
            for group in m.optimizer.param_groups:
                group["lr"] = lr
        batches = [m.sampler.sample() for m in self.members]
        if self.data.device.type == "cuda":  # pinned host memory lets the copy overlap the previous step's kernels
            batches = [
                {k: v.pin_memory().to(self.data.device, non_blocking=True) for k, v in b.items()} for b in batches
            ]
        with self.amp:
            losses = self.update.losses(batches)
        if not torch.isfinite(losses).all():  # stop before this step touches the weights or a checkpoint
            bad = [m.paths.root.name for m, ok in zip(self.members, torch.isfinite(losses).tolist()) if not ok]
            which = f" ({', '.join(bad)})" if len(self.members) > 1 else ""
            raise DivergedError(
                f"loss became {losses.max().item()}{which} at step {step + 1}; no checkpoint was written "
                "for it. Lower train.lr or check the data"
            )
        grad_norms = self.update.step(losses)
        self.window_samples += self.cfg.train.batch_size
        for log, loss, batch in zip(self.logs, losses.tolist(), batches):
            log.loss = loss
            log.timesteps += int(batch["mask"].sum())
        return grad_norms

    def log(self, step: int, grad_norms) -> None:
        elapsed = time.perf_counter() - self.window_start
        for m, log, grad_norm in zip(self.members, self.logs, grad_norms):
            scalars = {
                "train/loss": log.loss,
                "train/lr": m.optimizer.param_groups[0]["lr"],
                "train/grad_norm": float(grad_norm),
                "train/samples_per_s": self.window_samples / max(elapsed, 1e-9),
            }
            log.loggers.scalars(scalars, step)
        self.window_start, self.window_samples = time.perf_counter(), 0

    def add_seconds(self, seconds: float, which: str) -> None:
        """Each member's share of `seconds` (a seed group's members share the step) added to its count."""
        for log in self.logs:
            setattr(log, which, getattr(log, which) + seconds / len(self.logs))

    def checkpoint(self, step: int) -> None:
        now = time.perf_counter()
        self.add_seconds(now - self.wall_mark, "wall_seconds")
        self.wall_mark = now
        for m, log in zip(self.members, self.logs):
            log.state["loss"] = log.loss
            log.state.update(timesteps=log.timesteps, train_seconds=log.train_seconds, wall_seconds=log.wall_seconds)
            rng = _rng_state(m.sampler, self.data.device)
            save_checkpoint(
                m.paths.root, step, m.model, m.optimizer, log.state, rng, keep=self.cfg.train.keep_checkpoints
            )
        self.run_dirs.started()  # the new runs have checkpointed: replaced ones can go
        for m in self.members:
            for callback in self.hooks.checkpoint:
                callback(step, m.paths.root)

    def evaluate(self, step: int) -> list[list[TargetResult]]:
        """A training evaluation of every member (eval.episodes from eval.seed): metrics.jsonl, the loggers,
        keep_best's selection and the evaluation hooks."""
        cfg, data = self.cfg, self.data
        all_results = []
        for m, log in zip(self.members, self.logs):
            model = m.model
            mode = eval_mode(cfg, model)
            ev = cfg.eval
            results = evaluate_targets(
                model, cfg, data.info, data.targets, ev.episodes, mode, ev.seed, ev.max_steps, data.device
            )
            model.train()
            for r in results:
                _append_jsonl(m.paths.metrics, {"step": step, **without_timing([r])[0]})
            log.loggers.evaluation(results, step)
            score = _headline(results)
            if cfg.train.keep_best and (log.state["best"] is None or score > log.state["best"]["score"]):
                log.state["best"] = {"step": step, "score": score}
                rng = _rng_state(m.sampler, data.device)
                save_checkpoint(m.paths.root, step, model, m.optimizer, log.state, rng, name=m.paths.best_dir.name)
            for callback in self.hooks.evaluation:
                callback(step, results)
            all_results.append(results)
        return all_results

    def finish(self) -> list[RunSummary]:
        """The final evaluation (and the test evaluation with eval.final_episodes), then final.json."""
        cfg, data, members = self.cfg, self.data, self.members
        summaries = [_finished_summary(m.cfg, data.info, log.loss) for m, log in zip(members, self.logs)]
        try:
            if cfg.eval.episodes > 0:
                with _StopSignals(raise_now=lambda signum: self.stopped(signum, cfg.train.steps)):
                    results_of_members = self.evaluate(cfg.train.steps)  # the curve's last point; keep_best ranks it
                    for summary, log, results in zip(summaries, self.logs, results_of_members):
                        summary["eval"] = summarize_eval(results)
                        summary["eval_all_targets"] = without_timing(results)
                        if log.state["best"] is not None:
                            summary["best"] = dict(log.state["best"])
                    if cfg.eval.final_episodes > 0:
                        for m, summary in zip(members, summaries):
                            _test_evaluation(m, summary, data)
        except BaseException:
            self.finish_loggers([None] * len(members))
            raise
        self.add_seconds(time.perf_counter() - self.wall_mark, "wall_seconds")
        self.wall_mark = time.perf_counter()
        for summary, log in zip(summaries, self.logs):
            summary.update(timesteps=log.timesteps, train_seconds=log.train_seconds, wall_seconds=log.wall_seconds)
        self.finish_loggers(summaries)
        for m, summary in zip(members, summaries):
            write_atomic(m.paths.final, json.dumps(summary, indent=1))
        return summaries

    def stopped(self, signum: int, step: int) -> Interrupted:
        """A signal, during training or the final evaluation: the checkpoint is written, resuming goes on."""
        return Interrupted(_stopped_message(signum, step, self.resume_dir), exit_code=128 + signum)

    def finish_loggers(self, summaries) -> None:
        for log, summary in zip(self.logs, summaries):
            log.loggers.finish(summary)


def _finished_summary(cfg: Config, data: DataInfo, loss: float) -> RunSummary:
    return {
        "name": cfg.name,
        "step": cfg.train.steps,
        "finished": True,
        "final_loss": loss,
        "backbone": cfg.model.backbone,
        "dataset": data.name,
        "label": cfg.data.label or data.name,
        "seed": cfg.train.seed,
        "amp": cfg.train.amp,
        "dropout_impl": cfg.model.dropout_impl,
        "observe": data.view.name,  # what the model saw of each observation (views.py); flicker_p in config.yaml
        "behaviour_normalized": data.behaviour_normalized,
    }


def _test_evaluation(member: _Member, summary: RunSummary, data: _Data) -> None:
    """eval.final_episodes episodes per target on the test seeds (eval.test_seed + i), which no training
    evaluation used: the last checkpoint's become the run's score, the best checkpoint's (train.keep_best,
    selected on the training evaluations) its honest score. Both are scored on the same episodes."""
    cfg, model = member.cfg, member.model
    ev = cfg.eval

    def scored(net):
        mode = eval_mode(cfg, net)
        return without_timing(
            evaluate_targets(
                net, cfg, data.info, data.targets, ev.final_episodes, mode, ev.test_seed, ev.max_steps, data.device
            )
        )

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
        best_model.load_state_dict(load_checkpoint(member.paths.best_dir).model)
        tested = scored(best_model)
    best["test"], best["test_all_targets"] = summarize_eval(tested), tested
    model.train()


# ----- what the steps above share ----------------------------------------------------------------------------


def summarize_eval(results: list[TargetResult]) -> EvalSummary:
    first = results[0]
    return {
        "target_return": first["target_return"],
        "return_mean": first["return_mean"],
        "normalized_mean": first.get("normalized_mean"),
        "normalized_std": first.get("normalized_std"),
        "score_reference": first.get("score_reference"),
    }


def _headline(results: list[dict]) -> float:
    """The score keep_best ranks by: the first target's normalized return (its raw return without references)."""
    first = results[0]
    return first["normalized_mean"] if first.get("normalized_mean") is not None else first["return_mean"]


def _rng_state(sampler: WindowSampler, device: torch.device) -> dict:
    rng = {"torch": torch.get_rng_state(), "sampler": sampler.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def _append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


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
