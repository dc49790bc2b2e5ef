"""The report's figures of scores and learning curves (scores.png, learning_curves.png); the conditioning
curves are drawn by conditioning.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .analysis import behaviour_of, mean_curve
from .collect import Run, backbones_of, datasets_of
from .plots import color, panels, pyplot


def _title(runs, what):
    seeds = sorted({r.seed for r in runs}, key=str)
    return f"{what}: {len(seeds)} seeds, {', '.join(map(str, sorted({r.steps for r in runs})))} training steps"


def plot_learning_curves(path: Path, runs: list[Run]) -> bool:
    """Per dataset: each seed's curve (thin) and their mean (thick) per backbone, the behaviour policy dashed."""
    plt = pyplot()
    datasets = datasets_of(runs)
    fig, axes = panels(plt, len(datasets), 3.6)
    drew = False
    for ax, d in zip(axes, datasets):
        for b in backbones_of(runs):
            curves = [dict(r.curve) for r in runs if r.dataset == d and r.backbone == b and r.curve]
            if not curves:
                continue
            for c in curves:
                ax.plot(list(c), list(c.values()), color=color(b), alpha=0.3, linewidth=0.8, marker=".", markersize=3)
            mean = mean_curve(curves)
            if mean:
                ax.plot(
                    list(mean),
                    list(mean.values()),
                    color=color(b),
                    linewidth=2,
                    label=f"{b} (n={len(curves)})",
                )
                drew = True
        behaviour = behaviour_of(runs, d)
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
        behaviour = behaviour_of(runs, d)
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
