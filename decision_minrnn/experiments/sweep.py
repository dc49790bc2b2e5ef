"""Run a grid on Ray: a local instance by default, a cluster when an address is given.

Each run trains in its own directory and writes final.json when it is done. Running the sweep again skips
finished runs and resumes unfinished ones from their last checkpoint, so an interrupted sweep only redoes
what is missing. A run that fails is reported and the others go on.

On a cluster without a shared filesystem, --storage (experiments/storage.py) keeps each run's checkpoints
where every node can reach them: a worker trains in its own scratch directory, copies the run there after
every checkpoint, and sends the run's files (config, metrics, scalars, TensorBoard events, final.json) back
to the driver with its result, so RUNS_ROOT on the driver holds every finished run and `report` works
there. A worker that dies is retried by Ray (MAX_RETRIES), on whichever node is alive, and resumes from the
stored checkpoint.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from ..errors import ConfigError, MissingExtraError, UserError, first_line, install_hint
from ..rundir import RunDir, write_atomic
from .grid import RunSpec, load_grid

# Environment variables a run needs from the driver. Passed as an argument rather than through Ray's
# runtime_env, which needs ray[default] (the dashboard agent and its dependencies) for this alone.
FORWARDED_ENV = ("MINARI_DATASETS_PATH",)
MAX_RETRIES = 3  # Ray's retries of a run whose worker process or node died


def _train_in_storage(cfg, spec: RunSpec, storage: str, overrides: list[str]) -> tuple[dict, dict, int]:
    """Train one run in a scratch directory of this node, mirrored to storage after every checkpoint.
    Returns (summary, the run's files for the driver, the step it resumed from)."""
    import shutil
    import tempfile

    from ..train import train
    from .storage import RunStorage, run_files

    store, run_id = RunStorage(storage), spec.relative_dir.as_posix()
    scratch = Path(tempfile.mkdtemp(prefix="decision-minrnn-run-"))
    try:
        local = scratch / "run"
        resumed_from = store.download(run_id, local)
        summary = train(
            cfg,
            local,
            resume=resumed_from > 0,
            progress=False,
            overrides=overrides if resumed_from > 0 else None,
            on_checkpoint=[lambda step, run_dir: store.upload(run_id, run_dir, step)],
        )
        store.upload_files(run_id, local)  # final.json, written after the last checkpoint
        return summary, run_files(local), resumed_from
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_one(
    spec: RunSpec,
    run_dir: str,
    threads: int,
    env: dict | None = None,
    storage: str | None = None,
    extra: list[str] | None = None,
) -> dict:
    """Train one run (in a Ray worker or in-process). Never raises: failures come back as records.
    env: the driver's values of FORWARDED_ENV, set in this process first. storage: see the module docstring;
    the record then carries the run's files ("files") and the step it resumed from ("resumed_from").
    extra: overrides from the sweep's options (e.g. train.device=cuda for --gpus-per-run)."""
    from ..train import train

    os.environ.update(env or {})

    record = {"dataset": spec.dataset, "backbone": spec.backbone, "seed": spec.seed, "run_dir": run_dir}
    start = time.time()
    try:
        overrides = spec.overrides + ([f"train.threads={threads}"] if threads else []) + (extra or [])
        cfg = RunSpec(spec.dataset, spec.backbone, spec.seed, spec.config_path, overrides).config()
        if storage is not None:
            summary, files, resumed_from = _train_in_storage(cfg, spec, storage, overrides)
            normalized = (summary.get("eval") or {}).get("normalized_mean")
            record.update(status="done", seconds=time.time() - start, normalized=normalized)
            record.update(files=files, resumed_from=resumed_from)
            return record
        path = Path(run_dir)
        # A run directory without a checkpoint holds only the leftovers of a run killed before its first
        # checkpoint: start it over. With a checkpoint, continue from it.
        has_checkpoint = RunDir(path).has_checkpoint
        summary = train(
            cfg,
            path,
            resume=has_checkpoint,
            force=not has_checkpoint,
            progress=False,
            overrides=overrides if has_checkpoint else None,
        )
        record.update(
            status="done", seconds=time.time() - start, normalized=(summary.get("eval") or {}).get("normalized_mean")
        )
        from .storage import run_files

        # For a driver on another machine that cannot see this one's RUNS_ROOT: _bring_home writes them there
        # unless final.json is already visible (one machine, or a shared filesystem).
        record["files"] = run_files(path)
    except Exception as exc:  # noqa: BLE001 - a failed run must not stop the sweep
        record.update(
            status="failed",
            error=f"{type(exc).__name__}: {first_line(exc)}",
            traceback=traceback.format_exc() if not isinstance(exc, UserError) else None,
        )
    return record


def run_group(
    specs: list[RunSpec],
    run_dirs: list[str],
    threads: int,
    env: dict | None = None,
    storage: str | None = None,
    extra: list[str] | None = None,
) -> list[dict]:
    """Train several seeds of one dataset x backbone as one seed group (train.seeds) in this process, into
    their usual run directories (RUNS/GRID/dataset/backbone/seed<N>). Never raises: one record per seed.
    One spec is an ordinary run (run_one), the only kind that takes storage."""
    if len(specs) == 1:
        return [run_one(specs[0], run_dirs[0], threads, env, storage, extra)]
    from ..train import train

    os.environ.update(env or {})
    first = specs[0]
    records = [
        {"dataset": s.dataset, "backbone": s.backbone, "seed": s.seed, "run_dir": d} for s, d in zip(specs, run_dirs)
    ]
    start = time.time()
    try:
        parent = Path(run_dirs[0]).parent
        if any(Path(d) != RunDir(parent).member(s.seed).root for s, d in zip(specs, run_dirs)):
            raise ValueError("a seed group's runs must be the seed<N> directories of one folder")
        seeds = ",".join(str(s.seed) for s in specs)
        group_overrides = [f"train.seeds=[{seeds}]", f"name={first.dataset}/{first.backbone}"]
        overrides = (
            first.overrides + group_overrides + ([f"train.threads={threads}"] if threads else []) + (extra or [])
        )
        cfg = RunSpec(first.dataset, first.backbone, first.seed, first.config_path, overrides).config()
        # The sweep groups runs by the step of their newest checkpoint: all resume from it, or all start over.
        resume = _checkpoint_step(Path(run_dirs[0])) > 0
        summary = train(
            cfg, parent, resume=resume, force=not resume, progress=False, overrides=overrides if resume else None
        )
        for record in records:
            run = summary["seeds"][record["seed"]]
            normalized = (run.get("eval") or {}).get("normalized_mean")
            record.update(status="done", seconds=time.time() - start, normalized=normalized, group=seeds)
    except Exception as exc:  # noqa: BLE001 - a failed group must not stop the sweep
        for record in records:
            record.update(
                status="failed",
                error=f"{type(exc).__name__}: {first_line(exc)}",
                traceback=traceback.format_exc() if not isinstance(exc, UserError) else None,
            )
    return records


def _checkpoint_step(run_dir: Path) -> int:
    """The step of a run directory's newest checkpoint; 0 without one."""
    return RunDir(run_dir).newest_step


def _seed_groups(pending: list) -> list[tuple[list, list]]:
    """Pending runs grouped by dataset, backbone and the step they resume from (one group trains in lockstep)."""
    groups: dict[tuple, tuple[list, list]] = {}
    for spec, run_dir in pending:
        key = (spec.dataset, spec.backbone, _checkpoint_step(Path(run_dir)))
        specs, dirs = groups.setdefault(key, ([], []))
        specs.append(spec)
        dirs.append(run_dir)
    return list(groups.values())


def is_finished(run_dir: Path) -> bool:
    return RunDir(run_dir).finished


def sweep(
    grid_path: str,
    runs_root: str = "runs",
    address: str | None = None,
    max_parallel: int | None = None,
    threads_per_run: int = 1,
    use_ray: bool = True,
    log=print,
    seed_groups: bool = False,
    storage: str | None = None,
    gpus_per_run: float = 0.0,
    overrides: list[str] | None = None,
) -> dict:
    """seed_groups: train the pending seeds of each dataset x backbone as one seed group (train.seeds) in one
    task instead of one task per seed. storage: see the module docstring. gpus_per_run: the GPU share Ray
    reserves for each run (0.25: four runs share a GPU); runs then train on CUDA.
    threads_per_run: the CPUs Ray reserves for each run, and its torch threads. overrides: dotted settings for
    every run, applied after the grid's own (`sweep --set`)."""
    if storage is not None and seed_groups:
        raise ConfigError("--storage and --seed-groups do not go together yet; drop one of them")
    if gpus_per_run < 0 or threads_per_run < 1:
        raise ConfigError("--gpus-per-run must be >= 0 and --cpus-per-run >= 1")
    if max_parallel is not None and max_parallel < 1:
        raise ConfigError(f"--max-parallel must be >= 1, got {max_parallel}")
    if storage is not None:
        from .storage import RunStorage

        RunStorage(storage)  # an unusable URI or a missing fsspec is one line now, not one per run later
    extra = ["train.device=cuda"] if gpus_per_run > 0 else []
    grid = load_grid(grid_path, overrides)
    root = Path(runs_root).resolve() / grid.name
    pending, skipped = [], []
    for spec in grid.runs:
        run_dir = root / spec.relative_dir
        (skipped if is_finished(run_dir) else pending).append((spec, str(run_dir)))
    log(f"sweep {grid.name}: {len(grid.runs)} runs, {len(skipped)} already finished, {len(pending)} to run -> {root}")
    records = []
    tasks = _seed_groups(pending) if seed_groups else [([spec], [run_dir]) for spec, run_dir in pending]
    options = {"storage": storage, "extra": extra}
    if tasks and use_ray:
        records = _run_on_ray(tasks, address, max_parallel, threads_per_run, gpus_per_run, options, log)
    elif tasks:
        for specs, run_dirs in tasks:
            for record in run_group(specs, run_dirs, threads_per_run, None, **options):
                records.append(_bring_home(record))
                _log_record(record, log)
    failed = [r for r in records if r["status"] == "failed"]
    summary = {
        "grid": grid.name,
        "root": str(root),
        "total": len(grid.runs),
        "skipped": len(skipped),
        "ran": len(records),
        "failed": len(failed),
        "records": records,
    }
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / "sweep_summary.json", json.dumps(summary, indent=1))
    return summary


def _log_record(record, log):
    name = f"{record['dataset']}/{record['backbone']}/seed{record['seed']}"
    if record["status"] == "done":
        score = record.get("normalized")
        log(
            f"  done    {name}  ({record['seconds']:.0f} s)"
            + (f"  normalized {score:.1f}" if score is not None else "")
        )
    else:
        log(f"  FAILED  {name}: {record['error']}")


def _bring_home(record: dict) -> dict:
    """A record from a worker that trained elsewhere (in storage, or on a node whose disk the driver cannot
    see): its run's files go into the driver's run directory, and the record keeps only their names."""
    files = record.pop("files", None)
    if files and not RunDir(record["run_dir"]).final.is_file():
        from .storage import write_run_files

        write_run_files(Path(record["run_dir"]), files)
        record["files_home"] = sorted(files)
    return record


def _run_on_ray(tasks, address, max_parallel, threads_per_run, gpus_per_run, options, log):
    try:
        import ray
    except ImportError:
        raise MissingExtraError(f"sweep needs Ray: {install_hint('ray')} (or run with --no-ray)") from None
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    # address "local" always starts a fresh local instance instead of joining one found on the machine.
    init_kwargs = {"address": address or "local", "include_dashboard": False, "log_to_driver": False}
    if address is None and max_parallel:
        init_kwargs["num_cpus"] = max_parallel * threads_per_run
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(**init_kwargs)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus_per_run > gpus:  # Ray would wait forever for a GPU that no node has
            raise ConfigError(f"--gpus-per-run {gpus_per_run}, but the Ray cluster has {gpus:g} GPUs")
        remote = ray.remote(num_cpus=threads_per_run, num_gpus=gpus_per_run, max_retries=MAX_RETRIES)(run_group)
        futures = {remote.remote(specs, dirs, threads_per_run, env, **options): (specs, dirs) for specs, dirs in tasks}
        records, waiting = [], list(futures)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            for ref in done:
                try:
                    finished = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a worker that died: report, continue
                    specs, dirs = futures[ref]
                    finished = [
                        {
                            "dataset": spec.dataset,
                            "backbone": spec.backbone,
                            "seed": spec.seed,
                            "run_dir": run_dir,
                            "status": "failed",
                            "error": f"worker died: {type(exc).__name__}",
                        }
                        for spec, run_dir in zip(specs, dirs)
                    ]
                for record in finished:
                    records.append(_bring_home(record))
                    _log_record(record, log)
        return records
    finally:
        if started_here:
            ray.shutdown()
