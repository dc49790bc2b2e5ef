"""Collect a sweep's runs into a report a reviewer accepts: per dataset x backbone the mean and IQM with 95%
stratified-bootstrap intervals, the sample std, n and every seed's score; an aggregate over datasets; the
probability that each minRNN beats the DT transformer; learning curves and score plots.

Each finished run directory holds final.json (its headline normalized score: the first target return, as
DT's tables report; the score of the last checkpoint, never the best one) and metrics.jsonl (periodic
evaluations, for the learning curves). Runs that cannot be used are listed with the reason, never dropped
silently. The published D4RL columns are printed beside ours and labelled as such, since datasets that are
not D4RL's (e.g. the bench data) are not comparable in absolute terms.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError
from .collect import Run, Skipped, backbones_of, collect_runs, datasets_of
from .conditioning import conditioning_stats, markdown_conditioning, plot_conditioning
from .plots import color, pyplot
from .published import PUBLISHED_COLUMNS, PUBLISHED_PROTOCOL, published_cell
from .selection import last_best_stats, markdown_last_best
from .stats import DEFAULT_REPS, probability_of_improvement, rank_test_p, score_stats

PUBLISHED_FOR_BACKBONE = {"transformer": "DT", "mingru": "minGRU", "minlstm": "minLSTM"}
BASELINE = "transformer"  # what P(X > Y) compares every other backbone against


def _behaviour(runs, dataset):
    values = [r.behaviour for r in runs if r.dataset == dataset and r.behaviour is not None]
    return float(np.mean(values)) if values else None


def _common_seed_matrix(cells: list[dict]) -> np.ndarray:
    """(n_seeds, n_cells) over the seeds that every cell has; each cell maps seed -> score (a dataset, or a
    dataset x backbone)."""
    common = sorted(set.intersection(*(set(cell) for cell in cells)), key=str) if cells else []
    return np.array([[cell[s] for cell in cells] for s in common]).reshape(len(common), len(cells))


def _seed_matrix(runs, backbone, datasets):
    """(n_seeds, n_datasets) for the seeds that this backbone finished on every one of the datasets."""
    return _common_seed_matrix(
        [{r.seed: r.normalized for r in runs if r.backbone == backbone and r.dataset == d} for d in datasets]
    )


def analyse(runs: list[Run], reps: int = DEFAULT_REPS) -> dict:
    """All the numbers of the report, as plain data (also written to stats.json)."""
    datasets, backbones = datasets_of(runs), backbones_of(runs)
    cells = []
    for d in datasets:
        for b in backbones:
            group = sorted((r for r in runs if r.dataset == d and r.backbone == b), key=lambda r: str(r.seed))
            if not group:
                continue
            s = score_stats([r.normalized for r in group], reps=reps)
            cells.append(
                {
                    "dataset": d,
                    "backbone": b,
                    **asdict(s),
                    "seeds": {str(r.seed): r.normalized for r in group},
                    "steps": sorted({r.steps for r in group}),
                    "behaviour": _behaviour(runs, d),
                    "published": published_cell(d, PUBLISHED_FOR_BACKBONE.get(b, "")),
                }
            )
    aggregate = []
    if len(datasets) > 1:
        for b in backbones:
            matrix = _seed_matrix(runs, b, datasets)
            if len(matrix):
                aggregate.append({"backbone": b, **asdict(score_stats(matrix, reps=reps)), "datasets": len(datasets)})
    improvement = []
    if BASELINE in backbones:
        for b in backbones:
            if b == BASELINE:
                continue
            # Per dataset, then over every dataset where both have runs (a grid still running has holes).
            shared = [d for d in datasets if len(_seed_matrix(runs, b, [d])) and len(_seed_matrix(runs, BASELINE, [d]))]
            groups = [(d, [d]) for d in shared] + ([(f"all {len(shared)} datasets", shared)] if len(shared) > 1 else [])
            for label, group in groups:
                x, y = _seed_matrix(runs, b, group), _seed_matrix(runs, BASELINE, group)
                if not len(x) or not len(y):
                    continue
                p, ci = probability_of_improvement(x, y, reps=reps)
                improvement.append(
                    {
                        "x": b,
                        "y": BASELINE,
                        "probability": p,
                        "ci": list(ci),
                        "n_x": len(x),
                        "n_y": len(y),
                        "datasets": label,
                    }
                )
    return {
        "cells": cells,
        "aggregate": aggregate,
        "improvement": improvement,
        "curves": curve_stats(runs, reps),
        "last_best": last_best_stats(runs, reps),
        "conditioning": conditioning_stats(runs),
        "datasets": datasets,
        "backbones": backbones,
        "steps": sorted({r.steps for r in runs}),
        "references": sorted({str(r.reference) for r in runs}),
    }


PLATEAU_FRACTION = 2 / 3  # the plateau test of BENCHMARKS.md section 5c: the last third of training


def _mean_curve(curves: list[dict[int, float]]) -> dict[int, float]:
    """The mean over seeds' curves at every step that all of them reached."""
    steps = sorted(set.intersection(*[set(c) for c in curves]))
    return {step: float(np.mean([c[step] for c in curves])) for step in steps}


def curve_stats(runs: list[Run], reps: int = DEFAULT_REPS) -> list[dict]:
    """Per dataset x target return x backbone: the mean over seeds at every evaluation step that all seeds
    reached, the final evaluation's 95% bootstrap interval, and whether the curve has plateaued: every mean
    from PLATEAU_FRACTION of the training steps on lies inside that final interval (None with one seed,
    which has no interval, or with no evaluation before the last one in that stretch)."""
    rows = []
    for d in datasets_of(runs):
        targets = sorted({t for r in runs if r.dataset == d for t in r.curves}, reverse=True)
        for t in targets:
            for b in backbones_of(runs):
                curves = [dict(r.curves[t]) for r in runs if r.dataset == d and r.backbone == b and r.curves.get(t)]
                if not curves:
                    continue
                means = _mean_curve(curves)
                if not means:
                    continue
                steps = list(means)
                final = score_stats([c[steps[-1]] for c in curves], reps=reps)
                last_third = [step for step in steps[:-1] if step >= PLATEAU_FRACTION * steps[-1]]
                flat = None
                if len(curves) > 1 and last_third:
                    flat = all(final.mean_ci[0] <= means[step] <= final.mean_ci[1] for step in last_third)
                rows.append(
                    {
                        "dataset": d,
                        "target_return": t,
                        "backbone": b,
                        "n": len(curves),
                        "means": {str(step): m for step, m in means.items()},
                        "final_ci": list(final.mean_ci) if len(curves) > 1 else None,
                        "plateau": flat,
                    }
                )
    return rows


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
        final = _ci(row["means"][steps[-1]], row["final_ci"] or (0, 0), row["n"])
        flat = {True: "yes", False: "no", None: "-"}[row["plateau"]]
        lines.append(
            f"| {row['dataset']} | {row['target_return']:.0f} | {row['backbone']} | {row['n']} | {means} | {final} "
            f"| {flat} |"
        )
    return "\n".join(lines) + "\n"


def _ci(value, interval, n):
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
            f"| {c['dataset']} | {c['backbone']} | {c['n']} | {_ci(c['mean'], c['mean_ci'], c['n'])} | "
            f"{_ci(c['iqm'], c['iqm_ci'], c['n'])} | {std} | {seeds} | {behaviour} | {c['published']} |"
        )
    for a in stats["aggregate"]:
        std = "-" if a["std"] is None else f"{a['std']:.1f}"
        lines.append(
            f"| **all {a['datasets']} datasets** | {a['backbone']} | {a['n']} | "
            f"{_ci(a['mean'], a['mean_ci'], a['n'])} | {_ci(a['iqm'], a['iqm_ci'], a['n'])} | {std} | | | |"
        )
    lines += [
        "",
        f"D4RL-normalized return at the first target return of the last checkpoint (reference scores: "
        f"{', '.join(stats['references'])}) after {', '.join(map(str, stats['steps']))} training steps. Intervals: "
        "95% percentile bootstrap over seeds, stratified by dataset (rliable). std: sample std (ddof=1). "
        "IQM: mean of the middle 50% of scores. The aggregate rows use the seeds a backbone finished on every "
        "dataset (n per dataset). Published: Table 3 of Feng et al. 2024 (D4RL v2, 5 seeds) for the same "
        "backbone; comparable to ours only when our runs used the D4RL datasets. How each published column "
        "was taken: " + "; ".join(f"{k}: {v}" for k, v in PUBLISHED_PROTOCOL.items()) + ".",
    ]
    if stats["improvement"]:
        lines += ["", "| X | Y | P(X > Y) [95% CI] | runs X / Y per dataset | datasets |", "|---|---|---|---|---|"]
        for p in stats["improvement"]:
            lines.append(
                f"| {p['x']} | {p['y']} | {p['probability']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}] | "
                f"{p['n_x']} / {p['n_y']} | {p['datasets']} |"
            )
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
        lines.append(f"| {d} | {t:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, stats: dict) -> None:
    with path.open("w", newline="") as f:
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
                + [published_cell(c["dataset"], col) for col in PUBLISHED_COLUMNS]
            )


def _title(runs, what):
    seeds = sorted({r.seed for r in runs}, key=str)
    return f"{what}: {len(seeds)} seeds, {', '.join(map(str, sorted({r.steps for r in runs})))} training steps"


def plot_learning_curves(path: Path, runs: list[Run]) -> bool:
    """Per dataset: each seed's curve (thin) and their mean (thick) per backbone, the behaviour policy dashed."""
    plt = pyplot()
    datasets = datasets_of(runs)
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6), squeeze=False)
    drew = False
    for ax, d in zip(axes[0], datasets):
        for b in backbones_of(runs):
            curves = [dict(r.curve) for r in runs if r.dataset == d and r.backbone == b and r.curve]
            if not curves:
                continue
            for c in curves:
                ax.plot(list(c), list(c.values()), color=color(b), alpha=0.3, linewidth=0.8, marker=".", markersize=3)
            mean = _mean_curve(curves)
            if mean:
                ax.plot(
                    list(mean),
                    list(mean.values()),
                    color=color(b),
                    linewidth=2,
                    label=f"{b} (n={len(curves)})",
                )
                drew = True
        behaviour = _behaviour(runs, d)
        if behaviour is not None:
            ax.axhline(behaviour, color="black", linestyle="--", linewidth=1, label="behaviour policy")
        ax.set_title(d, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel("normalized score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(_title(runs, "learning curves (thin: seeds, thick: mean)"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drew


def plot_scores(path: Path, runs: list[Run], stats: dict) -> None:
    """Per dataset and backbone: the mean with its 95% interval, every seed as a point, the behaviour policy."""
    plt = pyplot()
    datasets, backbones = stats["datasets"], stats["backbones"]
    cells = {(c["dataset"], c["backbone"]): c for c in stats["cells"]}
    width = 0.8 / len(backbones)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(datasets) * len(backbones) / 2 + 2), 4))
    rng = np.random.default_rng(0)  # horizontal jitter of the seed points only
    for i, d in enumerate(datasets):
        for j, b in enumerate(backbones):
            c = cells.get((d, b))
            if c is None:
                continue
            x = i + (j - (len(backbones) - 1) / 2) * width
            ax.bar(x, c["mean"], width * 0.9, color=color(b), alpha=0.5, label=b if i == 0 else None)
            ax.errorbar(
                x,
                c["mean"],
                yerr=[[c["mean"] - c["mean_ci"][0]], [c["mean_ci"][1] - c["mean"]]],
                color="black",
                capsize=3,
                linewidth=1,
            )
            seeds = list(c["seeds"].values())
            ax.scatter(
                x + rng.uniform(-width / 5, width / 5, len(seeds)),
                seeds,
                color=color(b),
                edgecolor="black",
                linewidth=0.5,
                s=14,
                zorder=3,
            )
        behaviour = _behaviour(runs, d)
        if behaviour is not None:
            ax.hlines(
                behaviour,
                i - 0.45,
                i + 0.45,
                color="black",
                linestyle="--",
                linewidth=1,
                label="behaviour policy" if i == 0 else None,
            )
    ax.set_xticks(np.arange(len(datasets)), datasets, rotation=20, ha="right")
    ax.set_ylabel("normalized score (mean, 95% CI, seeds)")
    ax.set_title(_title(runs, "last-checkpoint scores"), fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _usable_runs(runs_dir: Path) -> tuple[list[Run], list[Skipped]]:
    """collect_runs, or one DataError line when the directory is missing or holds no usable run."""
    if not runs_dir.is_dir():
        raise DataError(f"runs directory {runs_dir} does not exist")
    runs, skipped = collect_runs(runs_dir)
    if not runs:
        reasons = f" ({len(skipped)} skipped: {skipped[0].run_dir}: {skipped[0].reason}...)" if skipped else ""
        raise DataError(f"no finished runs with an evaluation under {runs_dir}{reasons}")
    return runs, skipped


def _check_reps(reps: int) -> None:
    if reps < 1:
        raise UsageError(f"--reps must be >= 1 (bootstrap resamples), got {reps}")


REPORT_FILES = ("table.md", "table.csv", "stats.json", "scores.png", "learning_curves.png", "conditioning.png")
COMPARE_FILES = ("comparison.md", "comparison.json")


def _check_out(out: Path, names: tuple[str, ...], command: str) -> None:
    """OUT may be new, or hold files of these names only where an earlier `command` wrote them (its JSON, the
    last of `names` with a .json suffix, is there and is its own): a table.md of the user's is never replaced."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a directory")
    present = [n for n in names if (out / n).exists() or (out / n).is_symlink()]
    if not present:
        return
    marker = out / next(n for n in names if n.endswith(".json"))
    keys = {"report": {"cells", "aggregate"}, "compare": {"labels", "rows", "aggregate"}}[command]
    try:
        ours = marker.is_file() and not marker.is_symlink() and keys <= set(json.loads(marker.read_text()))
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        ours = False
    if not ours:
        raise UsageError(
            f"--out {out} holds {', '.join(present)}, which an earlier {command} did not write; "
            "nothing was replaced: choose another --out"
        )


def report(runs_dir: str | Path, out: str | Path | None = None, reps: int = DEFAULT_REPS) -> dict:
    _check_reps(reps)
    runs_dir = Path(runs_dir)
    runs, skipped = _usable_runs(runs_dir)
    out = Path(out) if out else runs_dir / "report"
    _check_out(out, REPORT_FILES, "report")
    out.mkdir(parents=True, exist_ok=True)
    stats = analyse(runs, reps=reps)
    table = markdown_report(stats, skipped)
    by_target = markdown_targets_table(runs)
    if by_target:
        table += "\nMean normalized score at each target return:\n\n" + by_target
    curves = markdown_curves(stats["curves"])
    if curves:
        table += (
            "\nLearning curves (mean over the seeds that reached every step). A curve is flat over the last third "
            "when every mean from 2/3 of the training steps on lies inside the final evaluation's 95% interval:\n\n"
            + curves
        )
    last_best = markdown_last_best(stats["last_best"])
    if last_best:
        table += "\nLast and best checkpoint (the headline is the last):\n\n" + last_best
    conditioning = markdown_conditioning(stats["conditioning"])
    if conditioning:
        table += "\nReturn conditioning (evaluate --target-sweep), achieved against target return:\n\n" + conditioning
    (out / "table.md").write_text(table)
    write_csv(out / "table.csv", stats)
    (out / "stats.json").write_text(json.dumps({**stats, "skipped": [asdict(s) for s in skipped]}, indent=1))
    files = {
        "table_md": str(out / "table.md"),
        "table_csv": str(out / "table.csv"),
        "stats_json": str(out / "stats.json"),
        "scores_png": str(out / "scores.png"),
    }
    plot_scores(out / "scores.png", runs, stats)
    if plot_learning_curves(out / "learning_curves.png", runs):
        files["curves_png"] = str(out / "learning_curves.png")
    if plot_conditioning(out / "conditioning.png", runs, stats["conditioning"]):
        files["conditioning_png"] = str(out / "conditioning.png")
    return {"table": table, "files": files, "runs": len(runs), "skipped": skipped, "stats": stats}


def _scores_at(run: Run, target: float) -> float | None:
    """The run's last-checkpoint score at one target return (runs written before eval_all_targets have only
    the headline one)."""
    if run.by_target:
        return run.by_target.get(target)
    return run.normalized if run.target_return == target else None


def compare_runs(runs_a: list[Run], runs_b: list[Run], labels=("A", "B"), reps: int = DEFAULT_REPS) -> dict:
    """Two sets of runs side by side (an ablation: one setting changed, the rest of the protocol the same),
    per dataset x backbone x target return that both have: each side's mean with its 95% interval and every
    seed, the difference of the means, P(A > B) with its interval, and the exact rank test's p. The sides are
    compared as independent samples: the same seed under another setting is another draw, not a pair."""
    rows = []
    backbones = [b for b in backbones_of(runs_a) if b in set(backbones_of(runs_b))]
    for d in sorted(set(datasets_of(runs_a)) & set(datasets_of(runs_b))):
        for b in backbones:
            group_a = sorted((r for r in runs_a if r.dataset == d and r.backbone == b), key=lambda r: str(r.seed))
            group_b = sorted((r for r in runs_b if r.dataset == d and r.backbone == b), key=lambda r: str(r.seed))
            if not group_a or not group_b:
                continue
            headline = {r.target_return for r in group_a + group_b}
            targets = {t for r in group_a + group_b for t in (r.by_target or {r.target_return: r.normalized})}
            # the headline target first, then the others from the highest down, as DT's tables order them
            for t in sorted(targets, key=lambda t: (t not in headline, -(t or 0))):
                side_a = {str(r.seed): v for r in group_a if (v := _scores_at(r, t)) is not None}
                side_b = {str(r.seed): v for r in group_b if (v := _scores_at(r, t)) is not None}
                if not side_a or not side_b:
                    continue
                x, y = list(side_a.values()), list(side_b.values())
                sa, sb = score_stats(x, reps=reps), score_stats(y, reps=reps)
                p, ci = probability_of_improvement(x, y, reps=reps)
                rows.append(
                    {
                        "dataset": d,
                        "backbone": b,
                        "target_return": t,
                        "a": {"n": sa.n, "mean": sa.mean, "mean_ci": list(sa.mean_ci), "seeds": side_a},
                        "b": {"n": sb.n, "mean": sb.mean, "mean_ci": list(sb.mean_ci), "seeds": side_b},
                        "difference": sa.mean - sb.mean,
                        "probability": p,
                        "ci": list(ci),
                        "rank_test_p": rank_test_p(x, y),
                        "steps": sorted({r.steps for r in group_a + group_b}),
                    }
                )
    return {"labels": list(labels), "rows": rows, "aggregate": _compare_aggregate(rows, reps)}


def _compare_aggregate(rows: list[dict], reps: int) -> list[dict]:
    """Per target return present in every compared cell, the two sides over all cells at once: P(A > B) is the
    mean over cells, its interval a bootstrap stratified by cell, which has more seeds to go on than any single
    cell when the setting moves every backbone the same way. Seeds: those every cell has, on each side."""
    by_target = defaultdict(list)
    for row in rows:
        by_target[row["target_return"]].append(row)
    cells = {(r["dataset"], r["backbone"]) for r in rows}
    aggregate = []
    for t, group in by_target.items():
        if len(group) < 2 or len(group) != len(cells):
            continue
        x = _common_seed_matrix([r["a"]["seeds"] for r in group])
        y = _common_seed_matrix([r["b"]["seeds"] for r in group])
        if len(x) < 2 or len(y) < 2:
            continue
        p, ci = probability_of_improvement(x, y, reps=reps)
        aggregate.append(
            {
                "target_return": t,
                "cells": len(group),
                "a": {"n": len(x), "mean": float(x.mean())},
                "b": {"n": len(y), "mean": float(y.mean())},
                "probability": p,
                "ci": list(ci),
                "rank_test_p": rank_test_p(x, y),
            }
        )
    return aggregate


def _probability(row: dict) -> str:
    """P(A > B) with its interval; a side with one seed has nothing to resample, so no interval."""
    if min(row["a"]["n"], row["b"]["n"]) < 2:
        return f"{row['probability']:.2f} [n=1: none]"
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
            f"| {_ci(ra['mean'], ra['mean_ci'], ra['n'])} ({ra['n']}) | {_ci(rb['mean'], rb['mean_ci'], rb['n'])} "
            f"({rb['n']}) | {row['difference']:+.1f} | {_probability(row)} | {row['rank_test_p']:.3f} "
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


def compare(
    runs_dir_a: str | Path,
    runs_dir_b: str | Path,
    labels=("A", "B"),
    out: str | Path | None = None,
    reps: int = DEFAULT_REPS,
) -> dict:
    """`decision-minrnn compare`: the comparison table of two runs directories, written to OUT/comparison.md and
    OUT/comparison.json when out is given."""
    _check_reps(reps)
    (runs_a, skipped_a), (runs_b, skipped_b) = (_usable_runs(Path(d)) for d in (runs_dir_a, runs_dir_b))
    result = compare_runs(runs_a, runs_b, labels=labels, reps=reps)
    if not result["rows"]:
        raise DataError(
            f"{runs_dir_a} and {runs_dir_b} share no dataset x backbone: "
            f"{sorted({(r.dataset, r.backbone) for r in runs_a})} against "
            f"{sorted({(r.dataset, r.backbone) for r in runs_b})}"
        )
    result["skipped"] = [skipped_a, skipped_b]
    table = markdown_comparison(result)
    files = {}
    if out is not None:
        out = Path(out)
        _check_out(out, COMPARE_FILES, "compare")
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.md").write_text(table)
        serial = {**result, "skipped": [[asdict(s) for s in group] for group in result["skipped"]]}
        (out / "comparison.json").write_text(json.dumps(serial, indent=1))
        files = {"comparison_md": str(out / "comparison.md"), "comparison_json": str(out / "comparison.json")}
    return {**result, "table": table, "files": files}
