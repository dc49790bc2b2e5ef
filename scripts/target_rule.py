"""The held-out check of the target rule `evaluate --target-return best-episode`: each run's last checkpoint
scored at its training data's best episode return, on the same test episodes as its headline score (final.json's
eval_protocol: 100 episodes seeded from 1000000), beside that headline at DT's target.

    python scripts/target_rule.py measure ~/grid-runs/bench-cpu-nine --datasets walker2d-medium halfcheetah-medium
    python scripts/target_rule.py compare docs/bench-cpu-nine/runs --datasets walker2d-medium halfcheetah-medium

Why a held-out check: the rule was named after reading the target sweeps of seven datasets of docs/results.md
section 5f,
whose curves mostly peaked near the best episode; a rule read off those curves scores itself well on them. The
two datasets of the grid still untrained when the name was chosen are its test. `measure` needs the runs'
checkpoints and writes RUN/target_rule.json beside final.json (commit it with the run's other small files);
`compare` reads only those files and final.json. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from decision_minrnn.errors import DataError, UsageError, guarded
from decision_minrnn.evaluation import evaluate_checkpoint
from decision_minrnn.experiments.collect import Run, backbones_of, collect_runs, measure_runs, read_side_file
from decision_minrnn.experiments.stats import column_probability_of_improvement, mean_interval

RULE_FILE = "target_rule.json"
RULE = "best-episode"
BASELINE = "transformer"


def measure_run(run: Run) -> dict:
    """The rule's score on the episodes of the run's headline test evaluation (final.json's eval_protocol)."""
    if run.test_episodes is None or run.test_seed is None:
        raise UsageError(f"{run.run_dir}: final.json has no eval_protocol (a run without eval.final_episodes)")
    episodes, seed = run.test_episodes, run.test_seed
    out = evaluate_checkpoint(run.run_dir, episodes=episodes, targets=[RULE], seed=seed, device="cpu")
    if out["step"] != run.steps:  # the newest checkpoint must be the one final.json scored
        raise UsageError(f"{run.run_dir}: newest checkpoint is step {out['step']}, final.json's is {run.steps}")
    (result,) = out["results"]
    return {
        "rule": RULE,
        "target_return": result["target_return"],
        "normalized_mean": result["normalized_mean"],
        "normalized": result["normalized"],
        "episodes": episodes,
        "seed": seed,
        "step": out["step"],
        "headline_target_return": run.target_return,
    }


def _selected(runs: list[Run], datasets: list[str] | None) -> list[Run]:
    return [r for r in runs if datasets is None or r.dataset in datasets]


def measure(runs_dir: Path, datasets: list[str] | None, force: bool) -> dict:
    runs, _ = collect_runs(runs_dir)
    return measure_runs(_selected(runs, datasets), RULE_FILE, measure_run, force)


def _cell(values) -> dict:
    mean, (low, high) = mean_interval(values)
    return {"mean": mean, "ci": [low, high]}


def compare(runs_dir: Path, datasets: list[str] | None) -> dict:
    """Per dataset and backbone: the headline (DT's target) and the rule's score of the runs that have both, the
    paired gain (rule - headline, per seed), and P(backbone > transformer) at each target."""
    runs, _ = collect_runs(runs_dir)
    rows = []
    for dataset in sorted({r.dataset for r in _selected(runs, datasets)}):
        scored: dict[str, dict[int, tuple[float, float]]] = {}
        targets = {}
        for run in (r for r in runs if r.dataset == dataset):
            path = Path(run.run_dir) / RULE_FILE
            if path.is_file():
                rule = read_side_file(run.run_dir, RULE_FILE)
                protocol = (rule.get("step"), rule.get("episodes"), rule.get("seed"))
                if protocol != (run.steps, run.test_episodes, run.test_seed):
                    raise DataError(
                        f"{path} scored step {protocol[0]} on {protocol[1]} episodes from seed {protocol[2]}, the "
                        f"headline step {run.steps} on {run.test_episodes} from {run.test_seed}: they are no pair; "
                        "measure it again (--force)"
                    )
                scored.setdefault(run.backbone, {})[int(run.seed)] = (run.normalized, float(rule["normalized_mean"]))
                targets[run.backbone] = (run.target_return, float(rule["target_return"]))
        for backbone in backbones_of([r for r in runs if r.backbone in scored]):
            seeds = scored[backbone]
            pairs = np.array([seeds[s] for s in sorted(seeds)])  # (seeds, 2): headline, rule
            headline, rule = pairs.T
            row = {
                "dataset": dataset,
                "backbone": backbone,
                "seeds": sorted(seeds),
                "headline_target": targets[backbone][0],
                "rule_target": targets[backbone][1],
                "headline": _cell(headline),
                "rule": _cell(rule),
                "gain": _cell(rule - headline),
                "per_seed": {"headline": headline.tolist(), "rule": rule.tolist()},
            }
            if backbone != BASELINE and BASELINE in scored:
                base = np.array([scored[BASELINE][s] for s in sorted(scored[BASELINE])])
                for i, name in enumerate(("headline", "rule")):
                    # one bootstrap per target, as report draws the headline's: the same P and interval
                    ((p, (low, high)),) = column_probability_of_improvement(pairs[:, [i]], base[:, [i]])
                    row[f"p_over_{BASELINE}_{name}"] = {"p": p, "ci": [low, high]}
            rows.append(row)
    return {"rule": RULE, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help=f"write RUN/{RULE_FILE} for every run with a checkpoint")
    m.add_argument("runs")
    m.add_argument("--datasets", nargs="+", help="only these dataset labels")
    m.add_argument("--force", action="store_true", help="evaluate runs that already have the file again")
    c = sub.add_parser("compare", help="the rule's score beside the headline, per dataset and backbone")
    c.add_argument("runs")
    c.add_argument("--datasets", nargs="+", help="only these dataset labels")
    args = parser.parse_args()
    if args.command == "measure":
        out = measure(Path(args.runs), args.datasets, args.force)
    else:
        out = compare(Path(args.runs), args.datasets)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(guarded(main))  # the CLI's contract: one line and exit code 2 on bad input
