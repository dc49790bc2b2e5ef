"""Which runs train() trains, and from where: every check that can refuse and the checkpoint each run resumes
from, before any directory is touched. The config each run trains with is built here once (the checkpoint's
own on resume, with what a resume may change; train.amp resolved for the device) and never changed after."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .checkpoint import Checkpoint, load_checkpoint
from .config import Config, config_from_dict, load_config, resume_changes, validate
from .device import amp_reason, resolve_amp, resolve_device
from .errors import CheckpointError, ConfigError, UsageError
from .rundir import RunDir, check_run_dir, probe_lock


@dataclass
class OpenRun:
    """A run to train: its final config, its directory, the checkpoint it resumes from (None: a new run),
    its place in train()'s list of run directories, the device it trains on, and its precision with the reason
    (for the start line)."""

    cfg: Config
    paths: RunDir
    ckpt: Checkpoint | None
    index: int
    device: torch.device
    precision: str


def member_config(cfg: Config, seed: int) -> Config:
    """One seed of a group as the plain single-seed run it is on disk: train.seed set, train.seeds empty."""
    return replace(cfg, name=f"{cfg.name}/seed{seed}", train=replace(cfg.train, seed=seed, seeds=[]))


def open_runs(
    cfgs: list[Config | None],
    run_dirs: list[Path],
    resume: bool,
    force: bool,
    overrides: list[str] | None,
    seeds: list[int],
) -> tuple[list[OpenRun], list]:
    """(the runs still to train, every run's summary slot: final.json of the runs that had finished already).
    seeds: a seed group's (train.seeds, even just one), whose runs are RUN_DIR/seed<N>; [] for one run. A cfg of
    None is the run's own, built here from its checkpoint (train --resume --run-dir)."""
    runs, summaries = [], [None] * len(cfgs)
    for i, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs)):
        run, finished = _open(cfg, RunDir(run_dir), i, resume, force, overrides, seeds)
        if run is None:
            summaries[i] = finished
        else:
            runs.append(run)
    if runs:
        _check_group(runs)
    return runs, summaries


def _open(cfg: Config | None, paths: RunDir, index: int, resume: bool, force: bool, overrides, seeds: list[int]):
    """(run, None), or (None, its final.json) if it finished already."""
    probe_lock(paths.root)  # a live run first: its holder is the most useful thing to name
    check_run_dir(paths.root, resume, force)
    ckpt = saved = None
    if resume and paths.has_checkpoint:
        ckpt = load_checkpoint(paths.root)
        if "rng.torch" not in ckpt.train or "rng.sampler" not in ckpt.train:
            raise CheckpointError(
                f"{ckpt.path} has no train.safetensors (optimizer and RNG state), so it cannot be "
                "resumed exactly; it still evaluates"
            )
        # The run's own config wins, except what the user overrides now and a resume may change (more
        # train.steps, evaluation and logging settings: config.RESUME_MAY_CHANGE).
        saved = config_from_dict(ckpt.state["config"])
        built = config_from_dict(ckpt.state["config"], overrides)
        if overrides:  # what is set now meets a new run's rules (a budget that cannot learn, a setting doing nothing)
            built = validate(built, new_run=True)
    elif cfg is None:  # stopped before its first checkpoint: it starts again from the config it wrote
        if not paths.config.is_file():
            raise UsageError(
                f"nothing to resume in {paths.root}: no checkpoint and no {paths.config.name}; start the run "
                "with --config FILE"
            )
        saved = load_config(paths.config)  # what it wrote, before this call's overrides (a member's own name)
        built = load_config(paths.config, overrides)
    else:
        built = cfg
    # The seed it must hold: the caller's, or a group member's directory's (None: a run resumed by its directory).
    seed = cfg.train.seed if cfg is not None else (RunDir.seed_of(paths.root) if seeds else None)
    if seeds:
        asked = built.train.seeds  # set only by an override now: a member's saved config has none
        if asked and sorted(asked) != sorted(seeds):
            raise ConfigError(
                f"--resume continues the seeds {sorted(seeds)} of {paths.root.parent}, not "
                f"train.seeds={list(asked)}; train another seed as a new run (--run-dir NEW)"
            )
        # a member stays the plain run it is on disk: its own name and no train.seeds (the group's override)
        name = cfg.name if cfg is not None else (saved or built).name
        built = replace(built, name=name, train=replace(built.train, seeds=[]))
    cfg = built
    # The precision it trains in, resolved once: config.yaml, final.json and the hparams record what ran.
    device = resolve_device(cfg.train.device)
    amp = resolve_amp(cfg.train.amp, device)
    if ckpt is not None:
        changed = resume_changes(saved, cfg, amp)
        if changed:
            raise ConfigError(
                f"--resume cannot change {', '.join(changed)}: it changes what {paths.root} trained. A resume may "
                "change eval.*, train.steps, the logging and checkpoint cadence, train.device and train.threads; "
                "for other settings start a new run (--run-dir NEW)"
            )
        if seed is not None and cfg.train.seed != seed:
            raise CheckpointError(f"{paths.root} holds a run of seed {cfg.train.seed}, not of seed {seed}")
    if paths.final.exists() and ckpt is not None and ckpt.step >= cfg.train.steps:
        print(f"run {paths.root} already finished at step {ckpt.step}")
        return None, json.loads(paths.final.read_text())
    precision = amp_reason(cfg.train.amp, device)
    cfg = replace(cfg, train=replace(cfg.train, amp=amp))
    return OpenRun(cfg, paths, ckpt, index, device, precision), None


def _check_group(runs: list[OpenRun]) -> None:
    """A group trains in lockstep: one config apart from the seed, and one step to resume from."""
    first = runs[0]

    def seedless(cfg: Config) -> Config:
        return replace(cfg, name="", train=replace(cfg.train, seed=0))

    for run in runs[1:]:
        if seedless(run.cfg) != seedless(first.cfg):
            raise ConfigError(
                f"{run.paths.root} and {first.paths.root} have different settings; a seed group trains one "
                "config (resume the runs one by one)"
            )
    steps = {run.paths.root.name: run.ckpt.step if run.ckpt is not None else 0 for run in runs}
    if len(set(steps.values())) > 1:
        listed = ", ".join(f"{name} at {step}" for name, step in steps.items())
        raise CheckpointError(f"the seeds resume from different steps ({listed}); resume them one by one")
