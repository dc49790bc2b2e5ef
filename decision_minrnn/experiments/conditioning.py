"""Return-conditioning curves: what a model achieves when asked for each target return (DT's Figure 4), from
the RUN/target_sweep.json files that `evaluate --target-sweep` writes.

Both axes are D4RL-normalized with the run's own reference scores, so the identity line is "achieved exactly
what was asked". Per dataset and backbone: the mean over seeds at every target that all of them swept, and the
target at which that mean peaks: asked for more than that, the model gives no more (where it stops following).
On a composed dataset (medium-expert = medium + expert), `report --part-references` adds each part's mean
episode as a reference line: "does the model reach the expert's level when asked for it?" needs the expert's
level, which the run's checkpoint does not keep (it describes the data as a whole).
"""

from __future__ import annotations

import math
from itertools import cycle
from pathlib import Path

import numpy as np

from ..data.episodes import load_source
from ..errors import DataError
from .collect import backbones_of, datasets_of
from .plots import color, panels, pyplot
from .stats import DEFAULT_REPS, column_means, column_probability_of_improvement


def _target_key(target: float) -> float:
    """A swept target rounded to 0.1 normalized points: how the same target is matched across seeds, backbones
    and the per-episode counts of add_part_references."""
    return round(target, 1)


def conditioning_stats(runs, reps: int = DEFAULT_REPS, baseline: str | None = None) -> list[dict]:
    """Per dataset x backbone with sweeps: the mean achieved score at each target all its seeds swept (targets
    are rounded to 0.1 normalized points to match them across seeds and backbones) with its 95% bootstrap
    interval over the seeds, where that mean peaks, and, for every backbone but `baseline`, P(backbone >
    baseline) at each target both swept, with its interval (analysis.BASELINE: the transformer)."""
    rows, seeds_at = [], {}
    for d in datasets_of(runs):
        for b in backbones_of(runs):
            swept = [r for r in runs if r.dataset == d and r.backbone == b and r.sweep is not None]
            if not swept:
                continue
            curves = [{_target_key(t): a for t, a in zip(r.sweep.targets, r.sweep.achieved)} for r in swept]
            common = sorted(set.intersection(*(set(c) for c in curves)))
            if not common:
                continue
            seeds_at[d, b] = {t: [c[t] for c in curves] for t in common}
            matrix = np.array([seeds_at[d, b][t] for t in common]).T  # (seeds, targets)
            stats = dict(zip(common, column_means(matrix, reps=reps)))
            means = {t: stats[t][0] for t in common}
            peak = max(means, key=means.get)
            rows.append(
                {
                    "dataset": d,
                    "backbone": b,
                    "n": len(swept),
                    "episodes": sorted({r.sweep.episodes for r in swept}),
                    "means": {f"{t:.1f}": m for t, m in means.items()},
                    "cis": {f"{t:.1f}": list(stats[t][1]) for t in common},
                    "peak_target": peak,
                    "peak_achieved": means[peak],
                    "behaviour": _first(r.sweep.behaviour for r in swept),
                    "best_episode": _first(r.sweep.best_episode for r in swept),
                    "source": _first(r.sweep.source for r in swept),
                }
            )
    for row in rows:
        d, b = row["dataset"], row["backbone"]
        if b == baseline or (d, baseline) not in seeds_at:
            continue
        mine, theirs = seeds_at[d, b], seeds_at[d, baseline]
        shared = sorted(set(mine) & set(theirs))
        if not shared:
            continue
        x, y = (np.array([side[t] for t in shared]).T for side in (mine, theirs))  # (seeds, targets)
        versus = column_probability_of_improvement(x, y, reps=reps)
        row["vs_baseline"] = {
            "baseline": baseline,
            "targets": {f"{t:.1f}": {"probability": p, "ci": list(ci)} for t, (p, ci) in zip(shared, versus)},
        }
    return rows


def _first(values):
    return next((v for v in values if v is not None), None)


# An episode "reaches" a part's level when it scores at least that part's lower quartile: 3 in 4 of the
# part's own episodes do. The mean alone cannot answer "does it follow the expert when asked?": a mean halfway
# between the parts is the mixture's average and also half the episodes at the expert's level.
LEVEL_QUANTILE = 25


def add_part_references(rows: list[dict], runs) -> None:
    """For every row trained on a composed source ("a+b"):
    - row["parts"] = {part name: its mean episode return, normalized};
    - row["top_part"] = the best part's (highest mean) level, its lower quartile `level`; `data_share`, the
      fraction of the composed data's episodes at that level or above; and `at_target`, per swept target,
      [episodes at the level or above, episodes] over every seed's sweep (runs without per-episode scores
      are left out of it).
    Loads each part as training did (a Minari id or an hdf5 path, so the data must be where training found
    it); every part is normalized with the first reference scores a part has (they share an environment,
    which compose() checks).
    Raises DataError (one line, exit 2) where a part cannot be loaded."""
    loaded: dict[str, tuple[dict[str, float], dict]] = {}
    for row in rows:
        source = row.get("source")
        if not source or "+" not in source:
            continue
        if source not in loaded:
            loaded[source] = _part_levels(source)
        row["parts"], top = loaded[source]
        row["top_part"] = {**top, "at_target": _episodes_at_level(row, runs, top["level"])}


def _part_levels(source: str) -> tuple[dict[str, float], dict]:
    """({part: its mean episode, normalized}, {"name", "level", "data_share"} of the best part), from each
    part's episode returns normalized with the first reference scores a part has."""
    parts = [load_source(name) for name in source.split("+")]
    ref = next((p.ref_scores for p in parts if p.ref_scores is not None), None)
    if ref is None:
        raise DataError(f"--part-references: no part of {source} has reference scores to normalize with")
    scores = {p.name: np.asarray(ref.normalize(p.returns()), dtype=float) for p in parts}
    means = {name: float(s.mean()) for name, s in scores.items()}
    top = max(means, key=means.get)
    level = float(np.percentile(scores[top], LEVEL_QUANTILE))
    share = float(np.mean(np.concatenate(list(scores.values())) >= level))
    return means, {"name": top, "level": level, "data_share": share}


def _episodes_at_level(row: dict, runs, level: float) -> dict[str, list[int]]:
    """Per target of the row's curve: [episodes scoring `level` or more, episodes], summed over its seeds."""
    counts: dict[str, list[int]] = {}
    for r in runs:
        if r.dataset != row["dataset"] or r.backbone != row["backbone"] or r.sweep is None:
            continue
        for target, scores in zip(r.sweep.targets, r.sweep.episode_scores or []):
            key = f"{_target_key(target):.1f}"
            if key in row["means"]:
                k, n = counts.setdefault(key, [0, 0])
                counts[key] = [k + sum(s >= level for s in scores), n + len(scores)]
    return counts


def _short(name: str) -> str:
    """bench/hopper/expert-v0 -> expert-v0: the part's own name, the task being the row's."""
    return name.rstrip("/").rsplit("/", 1)[-1]


def markdown_conditioning(rows: list[dict]) -> str:
    if not rows:
        return ""
    with_parts = any(row.get("parts") for row in rows)
    lines = [
        "| dataset | backbone | n | achieved at each target (normalized target: mean achieved) | peaks at target "
        "| behaviour | best episode |" + (" parts' mean episodes |" if with_parts else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if with_parts else ""),
    ]
    for row in rows:
        means = ", ".join(f"{t}: {m:.1f}" for t, m in row["means"].items())
        behaviour = "-" if row["behaviour"] is None else f"{row['behaviour']:.1f}"
        best = "-" if row["best_episode"] is None else f"{row['best_episode']:.1f}"
        parts = ", ".join(f"{_short(p)} {m:.1f}" for p, m in (row.get("parts") or {}).items()) or "-"
        lines.append(
            f"| {row['dataset']} | {row['backbone']} | {row['n']} | {means} | {row['peak_target']:.1f} "
            f"({row['peak_achieved']:.1f}) | {behaviour} | {best} |" + (f" {parts} |" if with_parts else "")
        )
    lines += [
        "",
        "D4RL-normalized on both axes. Each run's last checkpoint evaluated at every target of its sweep "
        f"(`evaluate --target-sweep`, {', '.join(str(e) for e in sorted({e for r in rows for e in r['episodes']}))} "
        "episodes per target); the mean is over the seeds. 'peaks at target': the target of the highest mean "
        "(achieved there); a model that follows its target all the way peaks at the top of the sweep.",
    ]
    for d in sorted({row["dataset"] for row in rows}):
        lines += ["", *_dataset_table(d, [row for row in rows if row["dataset"] == d])]
    lines += [
        "",
        "Per dataset: the mean over seeds at each target with its 95% bootstrap interval, the peak of each backbone "
        "in bold; P(X > baseline): the probability that a seed of X achieves more than a seed of the baseline at "
        "that target, with its interval (an interval that contains 0.5 separates nothing).",
    ]
    return "\n".join(lines) + "\n"


def _dataset_table(dataset: str, rows: list[dict]) -> list[str]:
    """One dataset's curves as a table: a column per target (the union of the backbones'), a row per backbone
    (mean [95% CI], the peak in bold), then a row of P(X > baseline) per backbone that has one and, on a composed
    dataset with --part-references, a row per backbone of its episodes at the best part's level."""
    targets = sorted({t for row in rows for t in row["means"]}, key=float)
    lines = [f"| {dataset} target | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
    for row in rows:
        cells = []
        for t in targets:
            if t not in row["means"]:
                cells.append("-")
                continue
            low, high = row["cis"][t]
            cell = f"{row['means'][t]:.1f} [{low:.1f}, {high:.1f}]"
            cells.append(f"**{cell}**" if float(t) == row["peak_target"] else cell)
        lines.append(f"| {row['backbone']} (n={row['n']}) | " + " | ".join(cells) + " |")
    for row in rows:
        versus = row.get("vs_baseline")
        if not versus:
            continue
        cells = []
        for t in targets:
            p = versus["targets"].get(t)
            cells.append("-" if p is None else f"{p['probability']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]")
        lines.append(f"| P({row['backbone']} > {versus['baseline']}) | " + " | ".join(cells) + " |")
    top = next((row["top_part"] for row in rows if row.get("top_part")), None)
    if top is None:
        return lines
    name = _short(top["name"])
    for row in rows:
        at = (row.get("top_part") or {}).get("at_target")
        if at:
            cells = ["-" if t not in at else f"{at[t][0]}/{at[t][1]}" for t in targets]
            lines.append(f"| {row['backbone']}: episodes at {name}'s level | " + " | ".join(cells) + " |")
    return [
        f"{dataset}: {name}'s level is {top['level']:.1f}, the {LEVEL_QUANTILE}th percentile of its episodes "
        f"({100 - LEVEL_QUANTILE}% of them score that or more); {100 * top['data_share']:.0f}% of the training "
        "data's episodes do.",
        "",
        *lines,
    ]


def plot_conditioning(path: Path, runs, rows: list[dict]) -> bool:
    """Per dataset: each seed's curve (thin) and the mean (thick) per backbone, the identity line, the
    behaviour policy (dashed), the data's best episode (dotted) and, with --part-references, the mean episode of
    each part of a composed dataset (dash-dot)."""
    if not rows:
        return False
    plt = pyplot()
    datasets = sorted({row["dataset"] for row in rows})
    fig, axes = panels(plt, len(datasets), 4.0)
    for ax, d in zip(axes, datasets):
        low, high = math.inf, -math.inf
        for row in (r for r in rows if r["dataset"] == d):
            b = row["backbone"]
            for r in runs:
                if r.dataset == d and r.backbone == b and r.sweep is not None:
                    ax.plot(r.sweep.targets, r.sweep.achieved, color=color(b), alpha=0.3, linewidth=0.8)
                    low, high = min(low, *r.sweep.targets), max(high, *r.sweep.targets)
            targets = [float(t) for t in row["means"]]
            ax.plot(
                targets, list(row["means"].values()), color=color(b), linewidth=2, marker="o", markersize=3,
                label=f"{b} (n={row['n']})",
            )  # fmt: skip
        ax.plot([low, high], [low, high], color="gray", linewidth=1, label="achieved = target")
        first = next(r for r in rows if r["dataset"] == d)
        if first["behaviour"] is not None:
            ax.axhline(first["behaviour"], color="black", linestyle="--", linewidth=1, label="behaviour policy")
        if first["best_episode"] is not None:
            ax.axhline(first["best_episode"], color="black", linestyle=":", linewidth=1, label="best episode in data")
        for (name, mean), shade in zip((first.get("parts") or {}).items(), cycle(("#777777", "#333333"))):
            ax.axhline(mean, color=shade, linestyle="-.", linewidth=1, label=f"mean of {_short(name)}")
        ax.set_title(d, fontsize=10)
        ax.set_xlabel("target return (normalized)")
        ax.set_ylabel("achieved return (normalized)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("return conditioning of the last checkpoints (thin: seeds, thick: mean)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
