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
from dataclasses import asdict, dataclass, replace
from itertools import cycle
from pathlib import Path

import numpy as np

from ..data.episodes import load_source
from ..errors import DataError
from .collect import backbones_of, datasets_of
from .plots import color, panels, pyplot
from .stats import DEFAULT_REPS, column_means, column_probability_of_improvement


def _tenths(target: float) -> int:
    """A swept target in tenths of a normalized point: how the same target is matched across seeds, backbones
    and the per-episode counts of with_part_references (an int: a float is never a key)."""
    return round(round(target, 1) * 10)


@dataclass(frozen=True)
class CurvePoint:
    """One target of a dataset x backbone curve: the mean achieved over the seeds with its 95% bootstrap
    interval; P(backbone > baseline) there with its interval (None: no baseline swept it); with part
    references, (episodes at the best part's level or above, episodes) over every seed's sweep."""

    tenths: int  # the target, in tenths of a normalized point
    mean: float
    ci: tuple[float, float]
    versus: tuple[float, tuple[float, float]] | None = None
    at_level: tuple[int, int] | None = None

    @property
    def target(self) -> float:
        return self.tenths / 10

    @property
    def label(self) -> str:
        return f"{self.target:.1f}"


@dataclass(frozen=True)
class TopPart:
    """The best part (highest mean episode) of a composed dataset: its level is its lower quartile, and
    data_share the fraction of the composed data's episodes at that level or above."""

    name: str
    level: float
    data_share: float


@dataclass(frozen=True)
class ConditioningCurve:
    """Per dataset x backbone with sweeps: the mean achieved at each target all its seeds swept, where that
    mean peaks, the data's reference levels and, from with_part_references, each part's mean episode."""

    dataset: str
    backbone: str
    n: int
    episodes: tuple[int, ...]  # episodes per target of the seeds' sweeps
    points: tuple[CurvePoint, ...]  # by target
    behaviour: float | None
    best_episode: float | None
    source: str | None
    baseline: str | None = None  # whom each point's `versus` compares with
    parts: tuple[tuple[str, float], ...] = ()  # (part, its mean episode, normalized)
    top_part: TopPart | None = None

    @property
    def peak(self) -> CurvePoint:
        """The point of the highest mean (the lowest such target)."""
        return max(self.points, key=lambda p: p.mean)

    def to_dict(self) -> dict:
        """stats.json's layout: per-target fields keyed by the target printed to 0.1."""
        out = {
            "dataset": self.dataset,
            "backbone": self.backbone,
            "n": self.n,
            "episodes": list(self.episodes),
            "means": {p.label: p.mean for p in self.points},
            "cis": {p.label: list(p.ci) for p in self.points},
            "peak_target": self.peak.target,
            "peak_achieved": self.peak.mean,
            "behaviour": self.behaviour,
            "best_episode": self.best_episode,
            "source": self.source,
        }
        if self.baseline is not None:
            out["vs_baseline"] = {
                "baseline": self.baseline,
                "targets": {
                    p.label: {"probability": p.versus[0], "ci": list(p.versus[1])} for p in self.points if p.versus
                },
            }
        if self.top_part is not None:
            out["parts"] = dict(self.parts)
            at = {p.label: list(p.at_level) for p in self.points if p.at_level is not None}
            out["top_part"] = {**asdict(self.top_part), "at_target": at}
        return out


def conditioning_stats(runs, reps: int = DEFAULT_REPS, baseline: str | None = None) -> list[ConditioningCurve]:
    """Per dataset x backbone with sweeps: the mean achieved score at each target all its seeds swept (targets
    are rounded to 0.1 normalized points to match them across seeds and backbones) with its 95% bootstrap
    interval over the seeds, and, for every backbone but `baseline`, P(backbone > baseline) at each target both
    swept, with its interval (analysis.BASELINE: the transformer)."""
    curves, seeds_at = [], {}
    for d in datasets_of(runs):
        for b in backbones_of(runs):
            swept = [r for r in runs if r.dataset == d and r.backbone == b and r.sweep is not None]
            if not swept:
                continue
            per_seed = [{_tenths(t): a for t, a in zip(r.sweep.targets, r.sweep.achieved)} for r in swept]
            common = sorted(set.intersection(*(set(c) for c in per_seed)))
            if not common:
                continue
            seeds_at[d, b] = {k: [c[k] for c in per_seed] for k in common}
            matrix = np.array([seeds_at[d, b][k] for k in common]).T  # (seeds, targets)
            points = [CurvePoint(k, m, tuple(ci)) for k, (m, ci) in zip(common, column_means(matrix, reps=reps))]
            curves.append(
                ConditioningCurve(
                    dataset=d,
                    backbone=b,
                    n=len(swept),
                    episodes=tuple(sorted({r.sweep.episodes for r in swept})),
                    points=tuple(points),
                    behaviour=_first(r.sweep.behaviour for r in swept),
                    best_episode=_first(r.sweep.best_episode for r in swept),
                    source=_first(r.sweep.source for r in swept),
                )
            )
    return [_versus(c, seeds_at, baseline, reps) for c in curves]


def _versus(curve: ConditioningCurve, seeds_at: dict, baseline: str | None, reps: int) -> ConditioningCurve:
    """The curve with P(backbone > baseline) at each target both swept (the baseline's own curve unchanged)."""
    d, b = curve.dataset, curve.backbone
    if b == baseline or (d, baseline) not in seeds_at:
        return curve
    mine, theirs = seeds_at[d, b], seeds_at[d, baseline]
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        return curve
    x, y = (np.array([side[k] for k in shared]).T for side in (mine, theirs))  # (seeds, targets)
    versus = {k: (p, tuple(ci)) for k, (p, ci) in zip(shared, column_probability_of_improvement(x, y, reps=reps))}
    points = tuple(replace(p, versus=versus.get(p.tenths)) for p in curve.points)
    return replace(curve, points=points, baseline=baseline)


def _first(values):
    return next((v for v in values if v is not None), None)


# An episode "reaches" a part's level when it scores at least that part's lower quartile: 3 in 4 of the
# part's own episodes do. The mean alone cannot answer "does it follow the expert when asked?": a mean halfway
# between the parts is the mixture's average and also half the episodes at the expert's level.
LEVEL_QUANTILE = 25


def with_part_references(curves: list[ConditioningCurve], runs) -> list[ConditioningCurve]:
    """Every curve trained on a composed source ("a+b") with its parts' mean episodes (normalized), its best
    part (TopPart) and, per target, the episodes at that part's level or above over every seed's sweep (runs
    without per-episode scores are left out of the count). Loads each part as training did (a Minari id or an
    hdf5 path, so the data must be where training found it); every part is normalized with the first reference
    scores a part has (they share an environment, which compose() checks).
    Raises DataError (one line, exit 2) where a part cannot be loaded."""
    loaded: dict[str, tuple[dict[str, float], TopPart]] = {}
    out = []
    for curve in curves:
        source = curve.source
        if not source or "+" not in source:
            out.append(curve)
            continue
        if source not in loaded:
            loaded[source] = _part_levels(source)
        parts, top = loaded[source]
        counts = _episodes_at_level(curve, runs, top.level)
        points = tuple(replace(p, at_level=counts.get(p.tenths)) for p in curve.points)
        out.append(replace(curve, parts=tuple(parts.items()), top_part=top, points=points))
    return out


def _part_levels(source: str) -> tuple[dict[str, float], TopPart]:
    """({part: its mean episode, normalized}, the best part), from each part's episode returns normalized with
    the first reference scores a part has."""
    parts = [load_source(name) for name in source.split("+")]
    ref = next((p.ref_scores for p in parts if p.ref_scores is not None), None)
    if ref is None:
        raise DataError(f"--part-references: no part of {source} has reference scores to normalize with")
    scores = {p.name: np.asarray(ref.normalize(p.returns()), dtype=float) for p in parts}
    means = {name: float(s.mean()) for name, s in scores.items()}
    top = max(means, key=means.get)
    level = float(np.percentile(scores[top], LEVEL_QUANTILE))
    share = float(np.mean(np.concatenate(list(scores.values())) >= level))
    return means, TopPart(top, level, share)


def _episodes_at_level(curve: ConditioningCurve, runs, level: float) -> dict[int, tuple[int, int]]:
    """Per target (tenths) of the curve: (episodes scoring `level` or more, episodes), summed over its seeds."""
    on_curve = {p.tenths for p in curve.points}
    counts: dict[int, tuple[int, int]] = {}
    for r in runs:
        if r.dataset != curve.dataset or r.backbone != curve.backbone or r.sweep is None:
            continue
        for target, scores in zip(r.sweep.targets, r.sweep.episode_scores or []):
            k = _tenths(target)
            if k in on_curve:
                reached, total = counts.get(k, (0, 0))
                counts[k] = (reached + int(sum(s >= level for s in scores)), total + len(scores))
    return counts


def _short(name: str) -> str:
    """bench/hopper/expert-v0 -> expert-v0: the part's own name, the task being the row's."""
    return name.rstrip("/").rsplit("/", 1)[-1]


def markdown_conditioning(curves: list[ConditioningCurve]) -> str:
    if not curves:
        return ""
    with_parts = any(c.parts for c in curves)
    lines = [
        "| dataset | backbone | n | achieved at each target (normalized target: mean achieved) | peaks at target "
        "| behaviour | best episode |" + (" parts' mean episodes |" if with_parts else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if with_parts else ""),
    ]
    for c in curves:
        means = ", ".join(f"{p.label}: {p.mean:.1f}" for p in c.points)
        behaviour = "-" if c.behaviour is None else f"{c.behaviour:.1f}"
        best = "-" if c.best_episode is None else f"{c.best_episode:.1f}"
        parts = ", ".join(f"{_short(p)} {m:.1f}" for p, m in c.parts) or "-"
        lines.append(
            f"| {c.dataset} | {c.backbone} | {c.n} | {means} | {c.peak.target:.1f} "
            f"({c.peak.mean:.1f}) | {behaviour} | {best} |" + (f" {parts} |" if with_parts else "")
        )
    episodes = ", ".join(str(e) for e in sorted({e for c in curves for e in c.episodes}))
    lines += [
        "",
        "D4RL-normalized on both axes. Each run's last checkpoint evaluated at every target of its sweep "
        f"(`evaluate --target-sweep`, {episodes} "
        "episodes per target); the mean is over the seeds. 'peaks at target': the target of the highest mean "
        "(achieved there); a model that follows its target all the way peaks at the top of the sweep.",
    ]
    for d in sorted({c.dataset for c in curves}):
        lines += ["", *_dataset_table(d, [c for c in curves if c.dataset == d])]
    lines += [
        "",
        "Per dataset: the mean over seeds at each target with its 95% bootstrap interval, the peak of each backbone "
        "in bold; P(X > baseline): the probability that a seed of X achieves more than a seed of the baseline at "
        "that target, with its interval (an interval that contains 0.5 separates nothing).",
    ]
    return "\n".join(lines) + "\n"


def _dataset_table(dataset: str, curves: list[ConditioningCurve]) -> list[str]:
    """One dataset's curves as a table: a column per target (the union of the backbones'), a row per backbone
    (mean [95% CI], the peak in bold), then a row of P(X > baseline) per backbone that has one and, on a composed
    dataset with --part-references, a row per backbone of its episodes at the best part's level."""
    targets = sorted({p.tenths for c in curves for p in c.points})
    lines = [f"| {dataset} target | " + " | ".join(f"{k / 10:.1f}" for k in targets) + " |"]
    lines.append("|---|" + "---|" * len(targets))

    def row(label: str, curve: ConditioningCurve, cell) -> str:
        """A table row: cell(point) per target, '-' where the curve has no such point or cell gives None."""
        by_target = {p.tenths: p for p in curve.points}
        texts = [cell(by_target[k]) if k in by_target else None for k in targets]
        return f"| {label} | " + " | ".join("-" if t is None else t for t in texts) + " |"

    def mean(p: CurvePoint, peak: CurvePoint) -> str:
        text = f"{p.mean:.1f} [{p.ci[0]:.1f}, {p.ci[1]:.1f}]"
        return f"**{text}**" if p is peak else text

    def versus(p: CurvePoint) -> str | None:
        return None if p.versus is None else f"{p.versus[0]:.2f} [{p.versus[1][0]:.2f}, {p.versus[1][1]:.2f}]"

    for c in curves:
        lines.append(row(f"{c.backbone} (n={c.n})", c, lambda p, peak=c.peak: mean(p, peak)))
    lines += [row(f"P({c.backbone} > {c.baseline})", c, versus) for c in curves if c.baseline is not None]
    top = next((c.top_part for c in curves if c.top_part is not None), None)
    if top is None:
        return lines
    name = _short(top.name)

    def reached(p: CurvePoint) -> str | None:
        return None if p.at_level is None else f"{p.at_level[0]}/{p.at_level[1]}"

    lines += [row(f"{c.backbone}: episodes at {name}'s level", c, reached) for c in curves if c.top_part is not None]
    return [
        f"{dataset}: {name}'s level is {top.level:.1f}, the {LEVEL_QUANTILE}th percentile of its episodes "
        f"({100 - LEVEL_QUANTILE}% of them score that or more); {100 * top.data_share:.0f}% of the training "
        "data's episodes do.",
        "",
        *lines,
    ]


def plot_conditioning(path: Path, runs, rows: list[ConditioningCurve]) -> bool:
    """Per dataset: each seed's curve (thin) and the mean (thick) per backbone, the identity line, the
    behaviour policy (dashed), the data's best episode (dotted) and, with --part-references, the mean episode of
    each part of a composed dataset (dash-dot)."""
    if not rows:
        return False
    plt = pyplot()
    datasets = sorted({row.dataset for row in rows})
    fig, axes = panels(plt, len(datasets), 4.0)
    for ax, d in zip(axes, datasets):
        low, high = math.inf, -math.inf
        for row in (r for r in rows if r.dataset == d):
            b = row.backbone
            for r in runs:
                if r.dataset == d and r.backbone == b and r.sweep is not None:
                    ax.plot(r.sweep.targets, r.sweep.achieved, color=color(b), alpha=0.3, linewidth=0.8)
                    low, high = min(low, *r.sweep.targets), max(high, *r.sweep.targets)
            ax.plot(
                [p.target for p in row.points], [p.mean for p in row.points], color=color(b), linewidth=2,
                marker="o", markersize=3, label=f"{b} (n={row.n})",
            )  # fmt: skip
        ax.plot([low, high], [low, high], color="gray", linewidth=1, label="achieved = target")
        first = next(r for r in rows if r.dataset == d)
        if first.behaviour is not None:
            ax.axhline(first.behaviour, color="black", linestyle="--", linewidth=1, label="behaviour policy")
        if first.best_episode is not None:
            ax.axhline(first.best_episode, color="black", linestyle=":", linewidth=1, label="best episode in data")
        for (name, mean), shade in zip(first.parts, cycle(("#777777", "#333333"))):
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
