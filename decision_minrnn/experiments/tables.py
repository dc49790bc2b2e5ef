"""The report's tables: Markdown (table.md, comparison.md) and CSV (table.csv), from analysis.py's numbers."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..rundir import replaced_atomically
from .collect import Run, Skipped, backbones_of
from .published import PUBLISHED_COLUMNS, PUBLISHED_PROTOCOL, published_cell


def markdown_curves(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = [
        "| dataset | target return | backbone | n | mean at each evaluation step | final [95% CI] "
        "| flat over the last third |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        steps = list(row["means"])
        means = ", ".join(f"{step}: {row['means'][step]:.1f}" for step in steps)
        final = ci_text(row["means"][steps[-1]], row["final_ci"] or (0, 0), row["n"])
        flat = {True: "yes", False: "no", None: "-"}[row["plateau"]]
        lines.append(
            f"| {row['dataset']} | {row['target_return']:.0f} | {row['backbone']} | {row['n']} | {means} | {final} "
            f"| {flat} |"
        )
    return "\n".join(lines) + "\n"


def ci_text(value, interval, n):
    """With one seed there is no interval to speak of: the bootstrap's zero width would only look certain."""
    return f"{value:.1f} [{interval[0]:.1f}, {interval[1]:.1f}]" if n > 1 else f"{value:.1f} [n=1: none]"


def markdown_report(stats: dict, skipped: list[Skipped]) -> str:
    lines = [
        "| dataset | backbone | n | mean [95% CI] | IQM [95% CI] | std | per seed | behaviour | published (D4RL) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in stats["cells"]:
        seeds = ", ".join(f"{v:.1f}" for v in c["seeds"].values())
        std = "-" if c["std"] is None else f"{c['std']:.1f}"
        behaviour = "-" if c["behaviour"] is None else f"{c['behaviour']:.1f}"
        lines.append(
            f"| {c['dataset']} | {c['backbone']} | {c['n']} | {ci_text(c['mean'], c['mean_ci'], c['n'])} | "
            f"{ci_text(c['iqm'], c['iqm_ci'], c['n'])} | {std} | {seeds} | {behaviour} | {c['published']} |"
        )
    for a in stats["aggregate"]:
        std = "-" if a["std"] is None else f"{a['std']:.1f}"
        lines.append(
            f"| **all {a['datasets']} datasets** | {a['backbone']} | {a['n']} | "
            f"{ci_text(a['mean'], a['mean_ci'], a['n'])} | {ci_text(a['iqm'], a['iqm_ci'], a['n'])} | {std} | | | |"
        )
    lines += [
        "",
        f"D4RL-normalized return at the first target return of the last checkpoint (reference scores: "
        f"{', '.join(stats['references'])}) after {', '.join(map(str, stats['steps']))} training steps. Intervals: "
        "95% percentile bootstrap over seeds, stratified by dataset (rliable). std: sample std (ddof=1). "
        "IQM: mean of the middle 50% of scores. The aggregate rows use the seeds a backbone finished on every "
        "dataset (n per dataset). Published: Table 3 of Feng et al. 2024 (D4RL v2, 5 seeds) for the same "
        "backbone, shown only beside runs on D4RL's v2 files (a bench or Minari dataset of the same label is other "
        "data). How each published column "
        "was taken: " + "; ".join(f"{k}: {v}" for k, v in PUBLISHED_PROTOCOL.items()).removesuffix(".") + ".",
    ]
    if stats["improvement"]:
        lines += ["", "| X | Y | P(X > Y) [95% CI] | runs X / Y per dataset | datasets |", "|---|---|---|---|---|"]
        for p in stats["improvement"]:
            value = (
                "n=1: none"
                if p["probability"] is None
                else f"{p['probability']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]"
            )
            lines.append(f"| {p['x']} | {p['y']} | {value} | {p['n_x']} / {p['n_y']} | {p['datasets']} |")
        lines += [
            "",
            "P(X > Y): probability that a run of X scores above a run of Y on the same dataset, averaged over "
            "datasets (Agarwal et al. 2021). An interval that contains 0.5 does not tell the two apart.",
        ]
    if skipped:
        lines += ["", f"Skipped or partly used ({len(skipped)}):", ""]
        lines += [f"- {s.run_dir}: {s.reason}" for s in skipped]
    return "\n".join(lines) + "\n"


def markdown_targets_table(runs: list[Run]) -> str:
    """Every evaluated target return, not only the headline one: on datasets whose returns stay far below
    DT's first target (the bench data is 'medium-low'), the two targets can rank models differently."""
    backbones = backbones_of(runs)
    groups = defaultdict(list)
    for r in runs:
        for target, score in r.by_target.items():
            if score is not None:
                groups[(r.dataset, target, r.backbone)].append(score)
    rows = sorted({(d, t) for d, t, _ in groups})
    if not rows:
        return ""
    lines = ["| dataset | target return | " + " | ".join(backbones) + " |", "|---|---|" + "---|" * len(backbones)]
    for d, t in rows:
        cells = []
        for b in backbones:
            v = groups.get((d, t, b))
            cells.append("-" if not v else f"{np.mean(v):.1f} (n={len(v)})")
        lines.append(f"| {d} | {t.value:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, stats: dict) -> None:
    with replaced_atomically(path) as (tmp,), tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "dataset",
                "backbone",
                "n",
                "mean",
                "mean_ci_low",
                "mean_ci_high",
                "iqm",
                "iqm_ci_low",
                "iqm_ci_high",
                "std",
                "per_seed",
                "behaviour",
            ]
            + [f"published_{c}" for c in PUBLISHED_COLUMNS]
        )
        for c in stats["cells"]:
            writer.writerow(
                [
                    c["dataset"],
                    c["backbone"],
                    c["n"],
                    f"{c['mean']:.3f}",
                    f"{c['mean_ci'][0]:.3f}",
                    f"{c['mean_ci'][1]:.3f}",
                    f"{c['iqm']:.3f}",
                    f"{c['iqm_ci'][0]:.3f}",
                    f"{c['iqm_ci'][1]:.3f}",
                    "" if c["std"] is None else f"{c['std']:.3f}",
                    " ".join(f"{k}:{v:.3f}" for k, v in c["seeds"].items()),
                    "" if c["behaviour"] is None else f"{c['behaviour']:.3f}",
                ]
                + [published_cell(c["dataset"], col) if c["published_applies"] else "-" for col in PUBLISHED_COLUMNS]
            )


def _probability(row: dict) -> str:
    """P(A > B) with its interval; a side with one seed gives neither (one pair of runs is no probability)."""
    if min(row["a"]["n"], row["b"]["n"]) < 2:
        return "n=1: none"
    return f"{row['probability']:.2f} [{row['ci'][0]:.2f}, {row['ci'][1]:.2f}]"


def markdown_comparison(result: dict) -> str:
    a, b = result["labels"]
    lines = [
        f"| dataset | backbone | target return | {a}: mean [95% CI] (n) | {b}: mean [95% CI] (n) | {a} - {b} "
        f"| P({a} > {b}) [95% CI] | rank test p | {a} per seed | {b} per seed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        ra, rb = row["a"], row["b"]
        lines.append(
            f"| {row['dataset']} | {row['backbone']} | {row['target_return']:.0f} "
            f"| {ci_text(ra['mean'], ra['mean_ci'], ra['n'])} ({ra['n']}) "
            f"| {ci_text(rb['mean'], rb['mean_ci'], rb['n'])} ({rb['n']}) | {row['difference']:+.1f} "
            f"| {_probability(row)} | {row['rank_test_p']:.3f} "
            f"| {', '.join(f'{v:.1f}' for v in ra['seeds'].values())} "
            f"| {', '.join(f'{v:.1f}' for v in rb['seeds'].values())} |"
        )
    for agg in result.get("aggregate", []):
        ra, rb = agg["a"], agg["b"]
        lines.append(
            f"| **all {agg['cells']} cells** | | {agg['target_return']:.0f} | {ra['mean']:.1f} ({ra['n']} each) "
            f"| {rb['mean']:.1f} ({rb['n']} each) | {ra['mean'] - rb['mean']:+.1f} | {_probability(agg)} "
            f"| {agg['rank_test_p']:.3f} | | |"
        )
    lines += [
        "",
        "D4RL-normalized return of each run's last checkpoint. Intervals: 95% percentile bootstrap over seeds "
        "(rliable). P(A > B): probability that a run of A scores above a run of B; an interval that contains 0.5 "
        "does not tell the two apart. Rank test: exact two-sided Mann-Whitney U (five runs all above five others "
        "is p = 0.008, three above three p = 0.1). The 'all cells' rows pool every dataset x backbone of a target: "
        "P(A > B) averaged over the cells with a bootstrap stratified by cell, and the rank test on the pooled "
        "scores, over the seeds that every cell has.",
    ]
    for label, skipped in zip(result["labels"], result.get("skipped", [[], []])):
        if skipped:
            lines += ["", f"Skipped from {label} ({len(skipped)}):", ""]
            lines += [f"- {s.run_dir}: {s.reason}" for s in skipped]
    return "\n".join(lines) + "\n"
