"""The numbers of a report, from collected runs: per dataset x backbone the mean and IQM with 95%
stratified-bootstrap intervals, the aggregate over datasets, P(X > DT), the learning curves and their
plateau test, the last-and-best and conditioning analyses (selection.py, conditioning.py), and two runs
directories side by side (compare)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from typing import TypedDict

import numpy as np

from .collect import Run, Target, backbones_of, datasets_of
from .conditioning import ConditioningCurve, conditioning_stats
from .published import published_cell
from .selection import last_best_stats
from .stats import DEFAULT_REPS, mean_interval, probability_of_improvement, rank_test_p, score_stats

PUBLISHED_FOR_BACKBONE = {"transformer": "DT", "mingru": "minGRU", "minlstm": "minLSTM"}


BASELINE = "transformer"  # what P(X > Y) compares every other backbone against


class CellStats(TypedDict):
    """One dataset x backbone: ScoreStats' fields (n, mean, mean_ci, iqm, iqm_ci, std) and what they came from."""

    dataset: str
    backbone: str
    n: int
    mean: float
    mean_ci: tuple[float, float]
    iqm: float
    iqm_ci: tuple[float, float]
    std: float | None
    seeds: dict[str, float]  # seed -> its last-checkpoint score
    steps: list[int]
    behaviour: float | None
    published: str  # published_cell's text, "-" where there is none


class Improvement(TypedDict):
    """P(x > y) with its 95% interval, on one dataset or all of them (datasets: the label)."""

    x: str
    y: str
    probability: float
    ci: list[float]
    n_x: int
    n_y: int
    datasets: str


class ReportStats(TypedDict):
    """Everything report() renders, and stats.json holds (curves: curve_stats' rows; last_best:
    selection.last_best_stats'; conditioning: conditioning.conditioning_stats')."""

    cells: list[CellStats]
    aggregate: list[dict]  # CellStats' score fields per backbone over all datasets, plus "datasets": their count
    improvement: list[Improvement]
    curves: list[dict]
    last_best: list[dict]
    conditioning: list[ConditioningCurve]  # stats.json: their to_dict()
    datasets: list[str]
    backbones: list[str]
    steps: list[int]
    references: list[str]


def behaviour_of(runs, dataset):
    values = [r.behaviour for r in runs if r.dataset == dataset and r.behaviour is not None]
    return float(np.mean(values)) if values else None


def on_published_data(runs: list[Run]) -> bool:
    """Whether the runs trained on the data the published numbers were measured on: D4RL's v2 files (one, or
    the parts of medium-expert), not a Minari port or the bench data that shares their labels."""
    names = {str(r.protocol.get("data")) for r in runs}
    return all(part.endswith("-v2") for name in names for part in name.split("+"))


def common_seed_matrix(cells: list[dict]) -> np.ndarray:
    """(n_seeds, n_cells) over the seeds that every cell has; each cell maps seed -> score (a dataset, or a
    dataset x backbone)."""
    common = sorted(set.intersection(*(set(cell) for cell in cells)), key=str) if cells else []
    return np.array([[cell[s] for cell in cells] for s in common]).reshape(len(common), len(cells))


def _seed_matrix(runs, backbone, datasets):
    """(n_seeds, n_datasets) for the seeds that this backbone finished on every one of the datasets."""
    return common_seed_matrix(
        [{r.seed: r.normalized for r in runs if r.backbone == backbone and r.dataset == d} for d in datasets]
    )


def analyse(runs: list[Run], reps: int = DEFAULT_REPS) -> ReportStats:
    """All the numbers of the report, as plain data (also written to stats.json)."""
    datasets, backbones = datasets_of(runs), backbones_of(runs)
    cells = []
    for d in datasets:
        for b in backbones:
            group = sorted((r for r in runs if r.dataset == d and r.backbone == b), key=lambda r: str(r.seed))
            if not group:
                continue
            s = score_stats([r.normalized for r in group], reps=reps)
            published = on_published_data(group)
            cells.append(
                {
                    "dataset": d,
                    "backbone": b,
                    **asdict(s),
                    "seeds": {str(r.seed): r.normalized for r in group},
                    "steps": sorted({r.steps for r in group}),
                    "behaviour": behaviour_of(runs, d),
                    "published": published_cell(d, PUBLISHED_FOR_BACKBONE.get(b, "")) if published else "-",
                    "published_applies": published,
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
                # One seed on a side is one pair of runs: no probability, and nothing to resample (issue 38).
                p, ci = probability_of_improvement(x, y, reps=reps) if min(len(x), len(y)) > 1 else (None, None)
                improvement.append(
                    {
                        "x": b,
                        "y": BASELINE,
                        "probability": p,
                        "ci": None if ci is None else list(ci),
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
        "conditioning": conditioning_stats(runs, reps, baseline=BASELINE),
        "datasets": datasets,
        "backbones": backbones,
        "steps": sorted({r.steps for r in runs}),
        "references": sorted({str(r.reference) for r in runs}),
    }


PLATEAU_FRACTION = 2 / 3  # the plateau test of docs/results.md section 5c: the last third of training


def mean_curve(curves: list[dict[int, float]]) -> dict[int, float]:
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
                means = mean_curve(curves)
                if not means:
                    continue
                steps = list(means)
                _, final_ci = mean_interval([c[steps[-1]] for c in curves], reps=reps)
                last_third = [step for step in steps[:-1] if step >= PLATEAU_FRACTION * steps[-1]]
                flat = None
                if len(curves) > 1 and last_third:
                    flat = all(final_ci[0] <= means[step] <= final_ci[1] for step in last_third)
                rows.append(
                    {
                        "dataset": d,
                        "target_return": t.value,
                        "backbone": b,
                        "n": len(curves),
                        "means": {str(step): m for step, m in means.items()},
                        "final_ci": list(final_ci) if len(curves) > 1 else None,
                        "plateau": flat,
                    }
                )
    return rows


def _scores_at(run: Run, target: Target | None) -> float | None:
    """The run's last-checkpoint score at one target return (runs written before eval_all_targets have only
    the headline one)."""
    if run.by_target:
        return run.by_target.get(target)
    return run.normalized if run.headline == target else None


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
            headline = {r.headline for r in group_a + group_b}
            targets = {t for r in group_a + group_b for t in (r.by_target or {r.headline: r.normalized})}
            # the headline target first, then the others from the highest down, as DT's tables order them
            for t in sorted(targets, key=lambda t: (t not in headline, -(t.tenths if t else 0))):
                side_a = {str(r.seed): v for r in group_a if (v := _scores_at(r, t)) is not None}
                side_b = {str(r.seed): v for r in group_b if (v := _scores_at(r, t)) is not None}
                if not side_a or not side_b:
                    continue
                x, y = list(side_a.values()), list(side_b.values())
                (mean_a, ci_a), (mean_b, ci_b) = mean_interval(x, reps=reps), mean_interval(y, reps=reps)
                one_seed = min(len(x), len(y)) < 2  # one pair of runs: no probability, no interval
                p, ci = (None, None) if one_seed else probability_of_improvement(x, y, reps=reps)
                rows.append(
                    {
                        "dataset": d,
                        "backbone": b,
                        "target_return": None if t is None else t.value,
                        "a": {"n": len(x), "mean": mean_a, "mean_ci": list(ci_a), "seeds": side_a},
                        "b": {"n": len(y), "mean": mean_b, "mean_ci": list(ci_b), "seeds": side_b},
                        "difference": mean_a - mean_b,
                        "probability": p,
                        "ci": None if ci is None else list(ci),
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
        by_target[None if row["target_return"] is None else Target.of(row["target_return"])].append(row)
    cells = {(r["dataset"], r["backbone"]) for r in rows}
    aggregate = []
    for t, group in by_target.items():
        if len(group) < 2 or len(group) != len(cells):
            continue
        x = common_seed_matrix([r["a"]["seeds"] for r in group])
        y = common_seed_matrix([r["b"]["seeds"] for r in group])
        if len(x) < 2 or len(y) < 2:
            continue
        p, ci = probability_of_improvement(x, y, reps=reps)
        aggregate.append(
            {
                "target_return": None if t is None else t.value,
                "cells": len(group),
                "a": {"n": len(x), "mean": float(x.mean())},
                "b": {"n": len(y), "mean": float(y.mean())},
                "probability": p,
                "ci": list(ci),
                "rank_test_p": rank_test_p(x, y),
            }
        )
    return aggregate
