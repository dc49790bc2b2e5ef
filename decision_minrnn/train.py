"""Training: a run (or the seeds of train.seeds, each a run of its own) from restore-or-initialise to its final
evaluation. `train` reads top to bottom as the work happens:

1. open the runs (resume.open_runs): every refusal and the checkpoint to resume from, before any directory is
   touched; each run's config is final from here on (train.amp resolved for the device);
2. the data, once for all seeds (training_data.load_training_data): dataset, view, normalizer, checks;
3. the learners (learner.Learner): each seed's model, optimizer and batch stream, from its seed or checkpoint;
4. the loop, inside the run directories' transaction (rundir.RunDirTransaction: locks, --force's move-aside and
   rollback): learning rate, one update of every seed (update.SeedGroup: DT's masked MSE of
   kzl/decision-transformer training/seq_trainer.py, AdamW with clipping), logs, evaluations, checkpoints;
5. the final evaluation (and the test evaluation with eval.final_episodes), then final.json (summary.py).

Determinism: the model init, the sampler and dropout all draw from seeded generators whose states are
checkpointed, so a resumed run reaches the same weights as one that was never interrupted.
"""

from __future__ import annotations

import copy
import json
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm import tqdm

from .checkpoint import load_checkpoint
from .config import Config, save_config
from .errors import DivergedError, Interrupted, UsageError
from .learner import Clock, Learner, restore_shared_rng
from .nn.scan import opaque_to_compile
from .resume import OpenRun, member_config, open_runs
from .rollout import TargetResult, evaluate_targets, without_timing
from .rundir import RunDir, RunDirTransaction, write_atomic
from .runs import eval_mode
from .stopping import StopSignals, stopped_message
from .summary import GroupSummary, RunSummary, finished_summary, headline, summarize_eval
from .training_data import TrainingData, load_training_data
from .update import SeedGroup, lr_at

ETA_AFTER = 20  # steps timed before the first ETA line


def train(
    cfg: Config | None,
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
    there and return {"name", "step", "steps", "finished": False} without the final evaluation, so that a run
    longer than one sitting (a job time limit, a shared machine) continues later with resume=True.
    callbacks: functions called as fn(step, results) after every evaluation (results: one dict per target
    return, as in metrics.jsonl), e.g. to log elsewhere or to stop early by raising.
    on_checkpoint: functions called as fn(step, run_dir) after every checkpoint is written (e.g. to copy it
    to storage that outlives this machine, as the sweep's --storage does).
    With train.seeds, every seed trains at once into RUN_DIR/seed<N>, a complete run of its own (resumable
    and evaluable alone), and the summary is {"name", "seeds": {seed: that run's summary}}.
    train.threads applies while the run lasts; the caller's torch thread count is restored afterwards.
    cfg None (with resume=True): continue the run, or the seed group, in run_dir with its own config, the
    checkpoint's with `overrides` on top (`train --resume --run-dir DIR`); resume.open_runs builds it, once."""
    if stop_at is not None and stop_at < 1:
        raise UsageError(f"--stop-at must be a step >= 1, got {stop_at}")
    if cfg is None and not resume:
        raise UsageError("train() without a config continues a run: it needs resume=True")
    resume_dir = Path(run_dir)
    seeds = RunDir(run_dir).member_seeds() if cfg is None else list(cfg.train.seeds)
    cfgs = [None if cfg is None else member_config(cfg, seed) for seed in seeds] if seeds else [cfg]
    run_dirs = [RunDir(run_dir).member(seed).root for seed in seeds] if seeds else [resume_dir]
    with _threads_restored():
        # 1. open the runs: a run that finished already has its final.json as its summary
        runs, summaries = open_runs(cfgs, run_dirs, resume, force, overrides, seeds)
        if not runs:
            return _returned(seeds, summaries)
        run_cfg = runs[0].cfg  # every setting but the seed is the runs' common one (open_runs checked it)
        # 2. the data, 3. the learners, then the dropout generator they share
        data = load_training_data(run_cfg, runs[0].ckpt, runs[0].device, models=len(runs))
        learners = [Learner(run, data.dataset, data.info, data.device) for run in runs]
        start = restore_shared_rng(runs[0].ckpt, data.device)
        end = min(run_cfg.train.steps, stop_at) if stop_at is not None else run_cfg.train.steps
        if progress:
            print(start_line(runs, data, start), flush=True)
        update = _seed_group(learners)
        amp = torch.autocast(data.device.type, dtype=torch.bfloat16, enabled=run_cfg.train.amp == "bf16")
        t = run_cfg.train
        # 4. the loop, inside the run directories' transaction
        with RunDirTransaction([m.paths.root for m in learners], resume, force) as transaction:
            for m in learners:
                save_config(m.cfg, m.paths.config)
                m.open_loggers(start)
            clock = Clock(learners)
            bar = tqdm(
                total=t.steps,
                initial=start,
                disable=not progress,
                desc=_bar_name(learners),
                mininterval=1.0,
                dynamic_ncols=True,
            )
            try:
                with StopSignals() as signals, bar:
                    for m in learners:
                        m.model.train()
                    for step in range(start, end):
                        done, started = step + 1, time.perf_counter()
                        lr = lr_at(step, run_cfg)
                        batches = [m.next_batch(lr) for m in learners]
                        with amp:
                            losses = update.losses(batches)
                        _check_finite(losses, learners, done)  # before this step touches the weights or a checkpoint
                        grad_norms = update.step(losses)
                        for m, loss, batch in zip(learners, losses.tolist(), batches):
                            m.loss, m.timesteps = loss, m.timesteps + int(batch["mask"].sum())
                        clock.stepped(time.perf_counter() - started, t.batch_size)
                        if done % t.log_every == 0 or done == end:
                            clock.log(done, grad_norms, lr)
                            bar.set_postfix(loss=f"{learners[0].loss:.4f}")
                        bar.update(1)
                        if progress and done == start + ETA_AFTER < end:
                            tqdm.write(clock.eta_line(start, done, end))
                        if signals.received is not None:
                            _checkpoint(learners, done, clock, transaction, on_checkpoint or [])
                            signum = signals.received
                            raise Interrupted(stopped_message(signum, done, resume_dir), exit_code=128 + signum)
                        if t.eval_every and done % t.eval_every == 0 and done < t.steps and run_cfg.eval.episodes:
                            _evaluate(learners, data, done, callbacks or [])
                        if done % t.checkpoint_every == 0 or done == end:
                            _checkpoint(learners, done, clock, transaction, on_checkpoint or [])
                if end < t.steps:  # stopped at stop_at on purpose: no final evaluation
                    _finish_loggers(learners, None)
                    for m in learners:
                        summaries[m.index] = {
                            "name": m.cfg.name,
                            "step": max(end, start),
                            "steps": t.steps,
                            "finished": False,
                        }
                    return _returned(seeds, summaries)
                transaction.started()  # a resumed-at-the-end run checkpointed nothing new but has started
                # 5. the final evaluation, then final.json
                finals = _final_evaluation(learners, data, callbacks or [], resume_dir)
            except BaseException:
                _finish_loggers(learners, None)
                raise
            clock.add_wall()
            for m, summary in zip(learners, finals):
                summary.update(timesteps=m.timesteps, train_seconds=m.train_seconds, wall_seconds=m.wall_seconds)
                m.loggers.finish(summary)
                write_atomic(m.paths.final, json.dumps(summary, indent=1))
                summaries[m.index] = summary
    return _returned(seeds, summaries)


@contextmanager
def _threads_restored():
    """train.threads applies while the run lasts (training_data sets it); the caller's count comes back."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _returned(seeds: list[int], summaries: list) -> RunSummary | GroupSummary:
    """The one run's summary, or a seed group's {"name", "seeds": {seed: its run's summary}} (the group's name:
    what comes before its members' /seed<N>)."""
    if seeds:
        name = str(summaries[0].get("name", "")).rsplit("/", 1)[0]
        return GroupSummary(name=name, seeds=dict(zip(seeds, summaries)))
    return summaries[0]


def _seed_group(learners: list[Learner]) -> SeedGroup:
    """One update for every learner (vmapped for a seed group; train.compile: one run only, config.validate)."""
    cfg, forward = learners[0].cfg, None
    if cfg.train.compile:
        opaque_to_compile()
        forward = torch.compile(learners[0].model)
    return SeedGroup([m.model for m in learners], [m.optimizer for m in learners], cfg.train.grad_clip, forward)


def start_line(runs: list[OpenRun], data: TrainingData, start_step: int) -> str:
    """What the run is about to do, before its first step: where, on what data, for how long, on what."""
    cfg, info = runs[0].cfg, data.info
    where = runs[0].paths.root if len(runs) == 1 else runs[0].paths.root.parent
    view = "" if info.view.name == "full" else f", {info.view.name} view"
    batches = "whole episodes" if cfg.data.sampler_mode == "episode" else f"K={cfg.data.context_len}"
    seeds = f", seeds {[r.cfg.train.seed for r in runs]}" if len(runs) > 1 else ""
    begin = f"from step {start_step} " if start_step else ""
    evaluation = (
        "no evaluation"
        if cfg.eval.episodes == 0
        else (f"evaluating every {cfg.train.eval_every} steps" if cfg.train.eval_every else "evaluating at the end")
    )
    return (
        f"train {where}: {cfg.model.backbone} ({cfg.model.token_layout} tokens) on {info.name} ({info.episodes} "
        f"episodes, {info.steps} steps{view}), {begin}to step {cfg.train.steps}, batch {cfg.train.batch_size} "
        f"({batches}){seeds}, {evaluation}; {data.device.type}, {runs[0].precision}"
    )


# ----- what the loop calls -----------------------------------------------------------------------------------


def _bar_name(learners: list[Learner]) -> str:
    name = learners[0].cfg.name
    return name if len(learners) == 1 else f"{name.rsplit('/', 1)[0]} x{len(learners)} seeds"


def _check_finite(losses: torch.Tensor, learners: list[Learner], step: int) -> None:
    if torch.isfinite(losses).all():
        return
    bad = [m.paths.root.name for m, ok in zip(learners, torch.isfinite(losses).tolist()) if not ok]
    which = f" ({', '.join(bad)})" if len(learners) > 1 else ""
    raise DivergedError(
        f"loss became {losses.max().item()}{which} at step {step}; no checkpoint was written "
        "for it. Lower train.lr or check the data"
    )


def _checkpoint(learners: list[Learner], step: int, clock: Clock, run_dirs: RunDirTransaction, hooks) -> None:
    clock.add_wall()
    for m in learners:
        m.save(step)
    run_dirs.started()  # the new runs have checkpointed: replaced ones can go
    for m in learners:
        for callback in hooks:
            callback(step, m.paths.root)


def _evaluate(learners: list[Learner], data: TrainingData, step: int, callbacks) -> list[list[TargetResult]]:
    """A training evaluation of every learner (eval.episodes from eval.seed): metrics.jsonl, the loggers,
    keep_best's selection and the evaluation callbacks."""
    all_results = []
    for m in learners:
        cfg = m.cfg
        results = _rollouts(m, m.model, data, cfg.eval.episodes, cfg.eval.seed)
        m.model.train()
        with m.paths.metrics.open("a") as f:
            for r in without_timing(results):
                f.write(json.dumps({"step": step, **r}) + "\n")
        m.loggers.evaluation(results, step)
        score = headline(results)
        if cfg.train.keep_best and (m.state["best"] is None or score > m.state["best"]["score"]):
            m.state["best"] = {"step": step, "score": score}
            m.save(step, name=m.paths.best_dir.name)
        for callback in callbacks:
            callback(step, results)
        all_results.append(results)
    return all_results


def _rollouts(m: Learner, net, data: TrainingData, episodes: int, seed: int) -> list[TargetResult]:
    """`episodes` rollouts per target of `net` (the learner's model, or its best checkpoint's) from `seed`, in the
    mode and with the step limit of the run's config."""
    cfg = m.cfg
    return evaluate_targets(
        net, cfg, data.info, data.targets, episodes, eval_mode(cfg, net), seed, cfg.eval.max_steps, data.device
    )


def _final_evaluation(learners: list[Learner], data: TrainingData, callbacks, resume_dir: Path) -> list[RunSummary]:
    """The last training evaluation (the curve's last point; keep_best ranks it) and, with eval.final_episodes,
    the test evaluation; a signal stops it at once (its checkpoint is written already)."""
    cfg = learners[0].cfg
    summaries = [finished_summary(m.cfg, data.info, m.loss) for m in learners]
    if cfg.eval.episodes == 0:
        return summaries

    def stop(signum: int) -> Interrupted:
        return Interrupted(stopped_message(signum, cfg.train.steps, resume_dir), exit_code=128 + signum)

    with StopSignals(raise_now=stop):
        for m, summary, results in zip(learners, summaries, _evaluate(learners, data, cfg.train.steps, callbacks)):
            summary["eval"], summary["eval_all_targets"] = summarize_eval(results), without_timing(results)
            if m.state["best"] is not None:
                summary["best"] = dict(m.state["best"])
            if cfg.eval.final_episodes > 0:
                _test_evaluation(m, summary, data)
    return summaries


def _test_evaluation(m: Learner, summary: RunSummary, data: TrainingData) -> None:
    """eval.final_episodes episodes per target on the test seeds (eval.test_seed + i), which no training
    evaluation used: the last checkpoint's become the run's score, the best checkpoint's (train.keep_best,
    selected on the training evaluations) its honest score. Both are scored on the same episodes."""
    ev = m.cfg.eval

    def scored(net):
        return without_timing(_rollouts(m, net, data, ev.final_episodes, ev.test_seed))

    last = scored(m.model)
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
        best_model = copy.deepcopy(m.model)  # not build_model: that would draw from the checkpointed generator
        best_model.load_state_dict(load_checkpoint(m.paths.best_dir).model)
        tested = scored(best_model)
    best["test"], best["test_all_targets"] = summarize_eval(tested), tested
    m.model.train()


def _finish_loggers(learners: list[Learner], summaries) -> None:
    for m in learners:
        if m.loggers is not None:
            m.loggers.finish(summaries)
