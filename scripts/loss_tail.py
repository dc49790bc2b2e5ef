"""The training fit of two runs directories side by side: per dataset x backbone, every seed's mean training
loss (DT's masked MSE on the sampled batches, dropout on) over the last part of training, read from each run's
scalars.csv, the mean over seeds with its 95% bootstrap interval, and the ratio B / A.

    python scripts/loss_tail.py docs/bench-cpu-converged/runs docs/bench-cpu-fast-dropout/runs --labels torch fast

A fit measure that needs no checkpoint, so it also reads committed runs whose checkpoints are gone. It is
noisier than a fixed set of windows (each logged loss is one batch), which the tail mean over many logged
steps and seeds offsets. Prints JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from decision_minrnn.experiments.collect import collect_runs
from decision_minrnn.experiments.stats import score_stats


def tail_losses(runs_dir: Path, tail: float) -> dict[tuple[str, str], dict[int, float]]:
    """(dataset, backbone) -> {seed: mean train/loss over the last `tail` fraction of logged steps}, for the
    runs that `report` reads (its labels, its skip rules)."""
    runs, _ = collect_runs(runs_dir)
    out: dict[tuple[str, str], dict[int, float]] = {}
    for run in runs:
        with (Path(run.run_dir) / "scalars.csv").open() as f:
            rows = [(int(r["step"]), float(r["value"])) for r in csv.DictReader(f) if r["tag"] == "train/loss"]
        last = max(step for step, _ in rows)
        values = [v for step, v in rows if step > (1 - tail) * last]
        out.setdefault((run.dataset, run.backbone), {})[int(run.seed)] = float(np.mean(values))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_a")
    parser.add_argument("runs_b")
    parser.add_argument("--labels", nargs=2, default=["A", "B"])
    parser.add_argument("--tail", type=float, default=0.2, help="the last fraction of training (default 0.2)")
    args = parser.parse_args()
    a, b = tail_losses(Path(args.runs_a), args.tail), tail_losses(Path(args.runs_b), args.tail)
    rows = []
    for key in sorted(set(a) & set(b)):
        sa, sb = score_stats(list(a[key].values())), score_stats(list(b[key].values()))
        rows.append(
            {
                "dataset": key[0],
                "backbone": key[1],
                args.labels[0]: {"mean": sa.mean, "ci": sa.mean_ci, "seeds": a[key]},
                args.labels[1]: {"mean": sb.mean, "ci": sb.mean_ci, "seeds": b[key]},
                "ratio": sb.mean / sa.mean,
            }
        )
    print(json.dumps({"tail": args.tail, "labels": args.labels, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
