"""Run a grid on Ray: a local instance by default, a cluster when an address is given.

Each run trains in its own directory and writes final.json when it is done. Running the sweep again skips
finished runs and resumes unfinished ones from their last checkpoint, so an interrupted sweep only redoes
what is missing. A run that fails is reported and the others go on.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from ..errors import MissingExtraError, UserError, first_line
from .grid import RunSpec, load_grid

# Environment variables a run needs from the driver. Passed as an argument rather than through Ray's
# runtime_env, which needs ray[default] (the dashboard agent and 240 MB of dependencies) for this alone.
FORWARDED_ENV = ("MINARI_DATASETS_PATH",)


def run_one(spec: RunSpec, run_dir: str, threads: int, env: dict | None = None) -> dict:
    """Train one run (in a Ray worker or in-process). Never raises: failures come back as records.
    env: the driver's values of FORWARDED_ENV, set in this process first."""
    from ..train import train

    os.environ.update(env or {})

    record = {"dataset": spec.dataset, "backbone": spec.backbone, "seed": spec.seed, "run_dir": run_dir}
    start = time.time()
    try:
        overrides = spec.overrides + ([f"train.threads={threads}"] if threads else [])
        cfg = RunSpec(spec.dataset, spec.backbone, spec.seed, spec.config_path, overrides).config()
        path = Path(run_dir)
        # A run directory without a checkpoint holds only the leftovers of a run killed before its first
        # checkpoint: start it over. With a checkpoint, continue from it.
        has_checkpoint = (path / "checkpoints").is_dir() and any((path / "checkpoints").iterdir())
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
    except Exception as exc:  # noqa: BLE001 - a failed run must not stop the sweep
        record.update(
            status="failed",
            error=f"{type(exc).__name__}: {first_line(exc)}",
            traceback=traceback.format_exc() if not isinstance(exc, UserError) else None,
        )
    return record


def run_group(specs: list[RunSpec], run_dirs: list[str], threads: int, env: dict | None = None) -> list[dict]:
    """Train several seeds of one dataset x backbone as one seed group (train.seeds) in this process, into
    their usual run directories (RUNS/GRID/dataset/backbone/seed<N>). Never raises: one record per seed."""
    if len(specs) == 1:
        return [run_one(specs[0], run_dirs[0], threads, env)]
    from ..train import train

    os.environ.update(env or {})
    first = specs[0]
    records = [
        {"dataset": s.dataset, "backbone": s.backbone, "seed": s.seed, "run_dir": d} for s, d in zip(specs, run_dirs)
    ]
    start = time.time()
    try:
        parent = Path(run_dirs[0]).parent
        if any(Path(d) != parent / f"seed{s.seed}" for s, d in zip(specs, run_dirs)):
            raise ValueError("a seed group's runs must be the seed<N> directories of one folder")
        seeds = ",".join(str(s.seed) for s in specs)
        group_overrides = [f"train.seeds=[{seeds}]", f"name={first.dataset}/{first.backbone}"]
        overrides = first.overrides + group_overrides + ([f"train.threads={threads}"] if threads else [])
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
    from ..checkpoint import list_checkpoints

    checkpoints = list_checkpoints(run_dir)
    return int(checkpoints[-1].name.split("-")[1]) if checkpoints else 0


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
    final = run_dir / "final.json"
    if not final.is_file():
        return False
    try:
        return bool(json.loads(final.read_text()).get("finished"))
    except json.JSONDecodeError:
        return False


def sweep(
    grid_path: str,
    runs_root: str = "runs",
    address: str | None = None,
    max_parallel: int | None = None,
    threads_per_run: int = 1,
    use_ray: bool = True,
    log=print,
    seed_groups: bool = False,
) -> dict:
    """seed_groups: train the pending seeds of each dataset x backbone as one seed group (train.seeds) in one
    task instead of one task per seed."""
    grid = load_grid(grid_path)
    root = Path(runs_root).resolve() / grid.name
    pending, skipped = [], []
    for spec in grid.runs:
        run_dir = root / spec.relative_dir
        (skipped if is_finished(run_dir) else pending).append((spec, str(run_dir)))
    log(f"sweep {grid.name}: {len(grid.runs)} runs, {len(skipped)} already finished, {len(pending)} to run -> {root}")
    records = []
    tasks = _seed_groups(pending) if seed_groups else [([spec], [run_dir]) for spec, run_dir in pending]
    if tasks and use_ray:
        records = _run_on_ray(tasks, address, max_parallel, threads_per_run, log)
    elif tasks:
        for specs, run_dirs in tasks:
            for record in run_group(specs, run_dirs, threads_per_run):
                records.append(record)
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
    (root / "sweep_summary.json").write_text(json.dumps(summary, indent=1))
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


def _run_on_ray(tasks, address, max_parallel, threads_per_run, log):
    try:
        import ray
    except ImportError:
        raise MissingExtraError("sweep needs Ray: pip install 'decision-minrnn[ray]' (or run with --no-ray)") from None
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    # address "local" always starts a fresh local instance instead of joining one found on the machine.
    init_kwargs = {"address": address or "local", "include_dashboard": False, "log_to_driver": False}
    if address is None and max_parallel:
        init_kwargs["num_cpus"] = max_parallel * threads_per_run
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(**init_kwargs)
    try:
        remote = ray.remote(num_cpus=threads_per_run)(run_group)
        futures = {remote.remote(specs, dirs, threads_per_run, env): (specs, dirs) for specs, dirs in tasks}
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
                    records.append(record)
                    _log_record(record, log)
        return records
    finally:
        if started_here:
            ray.shutdown()
