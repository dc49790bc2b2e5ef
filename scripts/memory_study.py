"""Issue 35's study (configs/grids/memory.yaml): the K=20 minRNN arm scored in window mode, and the tables.

    python scripts/memory_study.py measure ~/grid-runs/memory     # needs the checkpoints; RUN/window_score.json

`measure`: a minRNN trained on 20-step windows is evaluated recurrently from t=0 (its state has then seen more
than 20 steps: a distribution shift) in the grid's headline; here its last checkpoint is also scored the way it
was trained, re-running the last 20 steps from a zero state at every step (window mode), on the same test
episodes (final.json's eval_protocol). The result goes beside final.json as window_score.json.

"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from decision_minrnn.errors import UsageError
from decision_minrnn.evaluation import evaluate_checkpoint
from decision_minrnn.experiments.collect import Run, collect_runs, measure_runs

WINDOW_FILE = "window_score.json"
WINDOW_ARMS = ("mingru-k20",)  # the K=20 arms that can also act recurrently: scored both ways


def arm_of(run: Run) -> str:
    """The arm: the middle component of a grid run's directory (<dataset label>/<arm>/seed<N>)."""
    return Path(run.run_dir).parent.name


def measure_window(run: Run) -> dict:
    """The last checkpoint in window mode on the headline's test episodes."""
    if run.test_episodes is None or run.test_seed is None:
        raise UsageError(f"{run.run_dir}: final.json has no eval_protocol (a run without eval.final_episodes)")
    out = evaluate_checkpoint(run.run_dir, episodes=run.test_episodes, seed=run.test_seed, mode="window", device="cpu")
    if out["step"] != run.steps:  # the newest checkpoint must be the one final.json scored
        raise UsageError(f"{run.run_dir}: newest checkpoint is step {out['step']}, final.json's is {run.steps}")
    first = out["results"][0]
    return {
        "mode": "window",
        "step": out["step"],
        "episodes": run.test_episodes,
        "seed": run.test_seed,
        "target_return": first["target_return"],
        "normalized_mean": first["normalized_mean"],
        "normalized": first["normalized"],
        "all_targets": [
            {"target_return": r["target_return"], "normalized_mean": r["normalized_mean"]} for r in out["results"]
        ],
    }


def measure(runs_dir: Path, force: bool) -> dict:
    if not runs_dir.is_dir():
        raise UsageError(f"{runs_dir} is not a directory")
    runs, _ = collect_runs(runs_dir)
    return measure_runs([r for r in runs if arm_of(r) in WINDOW_ARMS], WINDOW_FILE, measure_window, force)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help=f"write RUN/{WINDOW_FILE} for the K=20 minRNN runs with a checkpoint")
    m.add_argument("runs")
    m.add_argument("--force", action="store_true", help="evaluate runs that already have the file again")
    args = parser.parse_args()
    try:
        out = measure(Path(args.runs), args.force)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
