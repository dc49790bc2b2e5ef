"""Last and best checkpoint side by side, each labelled by how it was chosen and scored.

- last: the headline. The last checkpoint, on the test episodes where the run had them (eval.final_episodes).
- best (held-out): train.keep_best's checkpoint, selected on the training evaluations (eval.episodes from
  eval.seed) and scored on the test episodes (eval.test_seed on), which the selection never saw.
- max over training: the highest training evaluation of the learning curve, chosen and scored on the same
  episodes. This is what a paper reporting "the best evaluation during training" reports; it is optimistic by
  construction (the max of noisy scores), and is here only to compare with such numbers.
"""

from __future__ import annotations

import numpy as np

from .collect import backbones_of, datasets_of
from .stats import DEFAULT_REPS, mean_interval
from .tables import ci_text

MEASURES = {
    "last": "last checkpoint",
    "best": "best checkpoint, selected on the training evaluations, scored on the test episodes",
    "max": "max over training evaluations (optimistic: chosen and scored on the same episodes)",
}


def _value(run, measure: str) -> float | None:
    return {"last": run.normalized, "best": run.best_test, "max": run.max_over_training}[measure]


def _stats(values: list[float], reps: int) -> dict | None:
    if not values:
        return None
    mean, ci = mean_interval(values, reps=reps)
    return {"n": len(values), "mean": mean, "mean_ci": list(ci)}


def last_best_stats(runs, reps: int = DEFAULT_REPS) -> list[dict]:
    """Per dataset x backbone, only where some run kept a best checkpoint scored on test episodes: each
    measure's mean with its 95% bootstrap interval over the seeds that have it, and the mean paired difference
    best - last over the seeds that have both."""
    rows = []
    for d in datasets_of(runs):
        for b in backbones_of(runs):
            group = [r for r in runs if r.dataset == d and r.backbone == b]
            if not any(r.best_test is not None for r in group):
                continue
            row = {"dataset": d, "backbone": b, "test_episodes": sorted({r.test_episodes or 0 for r in group})}
            for measure in MEASURES:
                row[measure] = _stats([v for r in group if (v := _value(r, measure)) is not None], reps)
            paired = [r.best_test - r.normalized for r in group if r.best_test is not None]
            row["best_minus_last"] = float(np.mean(paired)) if paired else None
            rows.append(row)
    return rows


def _cell(stats: dict | None) -> str:
    if stats is None:
        return "-"
    n = stats["n"]
    return ci_text(stats["mean"], stats["mean_ci"], n) + (f" ({n})" if n > 1 else "")


def markdown_last_best(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = [
        "| dataset | backbone | last (headline) | best, held-out test | max over training (optimistic) | best - last |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        diff = "-" if row["best_minus_last"] is None else f"{row['best_minus_last']:+.1f}"
        lines.append(
            f"| {row['dataset']} | {row['backbone']} | {_cell(row['last'])} | {_cell(row['best'])} "
            f"| {_cell(row['max'])} | {diff} |"
        )
    episodes = sorted({e for row in rows for e in row["test_episodes"]})
    lines += [
        "",
        "Mean [95% bootstrap CI] (seeds) of the D4RL-normalized return at the first target. "
        + " ".join(f"{k}: {v}." for k, v in MEASURES.items())
        + f" Test episodes per target: {', '.join(str(e) for e in episodes if e) or 'none (training evaluation)'}."
        " best - last: the mean over seeds of each run's difference.",
    ]
    return "\n".join(lines) + "\n"
