"""Collect a sweep's runs into a Table-3-style report: markdown and CSV tables, learning curves, bar charts.

Each finished run directory holds final.json (its headline normalized score: the first target return, as
DT's tables report) and metrics.jsonl (periodic evaluations, for the learning curves). Our numbers are mean
± std over seeds; the published D4RL columns are printed beside them and labelled as such, since datasets
that are not D4RL's (e.g. the bench data) are not comparable in absolute terms.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import DataError
from .published import PUBLISHED_COLUMNS, published_cell

BACKBONE_ORDER = ("mingru", "minlstm", "transformer", "gru", "lstm")


def collect_runs(runs_dir: Path) -> list[dict]:
    runs = []
    for final in sorted(Path(runs_dir).rglob("final.json")):
        try:
            summary = json.loads(final.read_text())
        except json.JSONDecodeError:
            continue
        if not summary.get("finished") or not summary.get("eval"):
            continue
        name_parts = str(summary.get("name", "")).split("/")
        dataset = name_parts[0] if len(name_parts) == 3 else summary.get("dataset")
        curve = []
        metrics = final.parent / "metrics.jsonl"
        if metrics.is_file():
            target = summary["eval"]["target_return"]
            by_step = {}
            for line in metrics.read_text().splitlines():
                record = json.loads(line)
                if record.get("target_return") == target and record.get("normalized_mean") is not None:
                    by_step[record["step"]] = record["normalized_mean"]  # last write wins after a resume
            curve = sorted(by_step.items())
        runs.append({"dataset": dataset, "backbone": summary["backbone"], "seed": summary.get("seed"),
                     "normalized": summary["eval"]["normalized_mean"], "return": summary["eval"]["return_mean"],
                     "steps": summary["step"], "reference": summary["eval"].get("score_reference"),
                     "curve": curve, "run_dir": str(final.parent),
                     "by_target": {r["target_return"]: r.get("normalized_mean")
                                   for r in summary.get("eval_all_targets", [])}})
    return runs


def _backbones(runs):
    present = {r["backbone"] for r in runs}
    return [b for b in BACKBONE_ORDER if b in present] + sorted(present - set(BACKBONE_ORDER))


def aggregate(runs: list[dict]) -> dict:
    """(dataset, backbone) -> {mean, std, n, seeds}."""
    groups = defaultdict(list)
    for r in runs:
        if r["normalized"] is not None:
            groups[(r["dataset"], r["backbone"])].append(r["normalized"])
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for k, v in groups.items()}


def markdown_table(runs: list[dict], stats: dict) -> str:
    datasets = sorted({r["dataset"] for r in runs})
    backbones = _backbones(runs)
    steps = sorted({r["steps"] for r in runs})
    header = ["dataset"] + [f"ours: {b}" for b in backbones] + [f"published {c} (D4RL)" for c in PUBLISHED_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for d in datasets:
        cells = [d]
        for b in backbones:
            s = stats.get((d, b))
            cells.append("-" if s is None else f"{s['mean']:.1f} ± {s['std']:.1f} (n={s['n']})")
        cells += [published_cell(d, c) for c in PUBLISHED_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    means = []
    for b in backbones:
        vals = [stats[(d, b)]["mean"] for d in datasets if (d, b) in stats]
        means.append(f"{np.mean(vals):.1f}" if len(vals) == len(datasets) else "-")
    lines.append("| average | " + " | ".join(means) + " |" + " |" * len(PUBLISHED_COLUMNS))
    references = sorted({str(r["reference"]) for r in runs})
    lines.append("")
    lines.append(f"Ours: D4RL-normalized return at the first target (reference scores: {', '.join(references)}), "
                 f"mean ± std over seeds, after {', '.join(map(str, steps))} training steps. Published columns: "
                 "D4RL v2 datasets, Table 3 of Feng et al. 2024 (5 seeds); they are comparable to ours only when our "
                 "runs also used the D4RL datasets.")
    return "\n".join(lines) + "\n"


def markdown_targets_table(runs: list[dict]) -> str:
    """Every evaluated target return, not only the headline one: on datasets whose returns stay far below
    DT's first target (the bench data is 'medium-low'), the two targets can rank models differently."""
    backbones = _backbones(runs)
    groups = defaultdict(list)
    for r in runs:
        for target, score in r["by_target"].items():
            if score is not None:
                groups[(r["dataset"], target, r["backbone"])].append(score)
    rows = sorted({(d, t) for d, t, _ in groups})
    if not rows:
        return ""
    lines = ["| dataset | target return | " + " | ".join(backbones) + " |", "|---|---|" + "---|" * len(backbones)]
    for d, t in rows:
        cells = []
        for b in backbones:
            v = groups.get((d, t, b))
            cells.append("-" if not v else f"{np.mean(v):.1f} ± {np.std(v):.1f}")
        lines.append(f"| {d} | {t:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, runs: list[dict], stats: dict) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "backbone", "mean", "std", "n_seeds"]
                        + [f"published_{c}" for c in PUBLISHED_COLUMNS])
        for (d, b), s in sorted(stats.items()):
            writer.writerow([d, b, f"{s['mean']:.3f}", f"{s['std']:.3f}", s["n"]]
                            + [published_cell(d, c) for c in PUBLISHED_COLUMNS])


def plot_learning_curves(path: Path, runs: list[dict]) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in runs})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.5), squeeze=False)
    drew = False
    for ax, d in zip(axes[0], datasets):
        for b in _backbones(runs):
            curves = [dict(r["curve"]) for r in runs if r["dataset"] == d and r["backbone"] == b and r["curve"]]
            if not curves:
                continue
            steps = sorted(set.intersection(*[set(c) for c in curves]))
            if not steps:
                continue
            values = np.array([[c[s] for s in steps] for c in curves])
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, label=b, marker="o", markersize=3)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
            drew = True
        ax.set_title(d)
        ax.set_xlabel("training step")
        ax.set_ylabel("normalized score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drew


def plot_bars(path: Path, runs: list[dict], stats: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in runs})
    backbones = _backbones(runs)
    width = 0.8 / len(backbones)
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(datasets) * len(backbones) / 2), 4))
    x = np.arange(len(datasets))
    for i, b in enumerate(backbones):
        means = [stats.get((d, b), {}).get("mean", np.nan) for d in datasets]
        stds = [stats.get((d, b), {}).get("std", 0.0) for d in datasets]
        ax.bar(x + (i - (len(backbones) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=b)
    ax.set_xticks(x, datasets, rotation=20, ha="right")
    ax.set_ylabel("normalized score (mean ± std over seeds)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(runs_dir: str | Path, out: str | Path | None = None) -> dict:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise DataError(f"runs directory {runs_dir} does not exist")
    runs = collect_runs(runs_dir)
    if not runs:
        raise DataError(f"no finished runs with an evaluation under {runs_dir}")
    out = Path(out) if out else runs_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    stats = aggregate(runs)
    table = markdown_table(runs, stats)
    by_target = markdown_targets_table(runs)
    if by_target:
        table += "\nNormalized score at each target return (mean ± std over seeds):\n\n" + by_target
    (out / "table.md").write_text(table)
    write_csv(out / "table.csv", runs, stats)
    files = {"table_md": str(out / "table.md"), "table_csv": str(out / "table.csv"),
             "bars_png": str(out / "scores.png")}
    plot_bars(out / "scores.png", runs, stats)
    if plot_learning_curves(out / "learning_curves.png", runs):
        files["curves_png"] = str(out / "learning_curves.png")
    return {"table": table, "files": files, "runs": len(runs)}
