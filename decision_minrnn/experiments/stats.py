"""Scores over seeds as a reviewer reads them: mean and interquartile mean (IQM) with 95% stratified-bootstrap
confidence intervals, the sample standard deviation, and the probability that one backbone beats another.

The intervals come from rliable (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice"; google-research/rliable), the library CORL reports with. Score matrices are
(n_runs, n_tasks): one row per seed, one column per dataset. A stratified bootstrap resamples the seeds of
each dataset separately, so with one dataset it is the plain percentile bootstrap over seeds.

rliable is imported here only, on first use: it is part of the `report` extra, not of the core install.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import MissingExtraError, install_hint

CONFIDENCE = 0.95
DEFAULT_REPS = 10_000  # bootstrap resamples; rliable's own default is 50k, 10k moves the 95% bounds by < 1%


def _rliable():
    try:
        from rliable import library, metrics
    except ImportError:
        raise MissingExtraError(f"report needs rliable: {install_hint('report')}") from None
    return library, metrics


@dataclass(frozen=True)
class ScoreStats:
    """Statistics of one score matrix (n_runs, n_tasks); a single dataset is n_tasks = 1."""

    n: int  # runs (seeds) per task
    mean: float
    mean_ci: tuple[float, float]
    iqm: float
    iqm_ci: tuple[float, float]
    std: float | None  # sample std (ddof=1) over all scores; None with one score


def _interval_estimates(score_dict: dict, func, reps: int, seed: int):
    library, _ = _rliable()
    # rliable 1.2's StratifiedBootstrap draws its resamples with np.random.choice, the global generator, not
    # the random_state it is given: seed that too, and give the caller's global state back afterwards.
    global_state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            # arch (rliable's bootstrap backend) warns that RandomState is deprecated; rliable still passes one.
            warnings.simplefilter("ignore", FutureWarning)
            return library.get_interval_estimates(
                score_dict,
                func,
                reps=reps,
                confidence_interval_size=CONFIDENCE,
                random_state=np.random.RandomState(seed),
            )
    finally:
        np.random.set_state(global_state)


def _as_matrix(scores) -> np.ndarray:
    """(n_runs, n_tasks) float64: one dataset's (n_runs,) scores become a single column."""
    matrix = np.asarray(scores, dtype=np.float64)
    return matrix[:, None] if matrix.ndim == 1 else matrix


def _mean_and_iqm(scores: np.ndarray) -> np.ndarray:
    """rliable's aggregate_mean and aggregate_iqm (scipy's trim_mean of all scores, a quarter cut from each
    end), the IQM by a sort: scipy's argument handling, once per resample, was most of a report's time. Same
    numbers (tested against rliable)."""
    flat = np.sort(scores, axis=None)
    cut = int(0.25 * flat.size)
    return np.array([np.mean(np.mean(scores, axis=0)), np.mean(flat[cut : flat.size - cut])])


def score_stats(scores, reps: int = DEFAULT_REPS, seed: int = 0) -> ScoreStats:
    """scores: (n_runs,) for one dataset or (n_runs, n_tasks) for several. Intervals: stratified bootstrap."""
    matrix = _as_matrix(scores)
    if matrix.size == 0:
        raise ValueError("no scores")
    point, interval = _interval_estimates({"x": matrix}, _mean_and_iqm, reps, seed)
    (mean, iqm), ci = point["x"], interval["x"]  # ci: rows (lower, upper), columns (mean, iqm)
    return ScoreStats(
        n=matrix.shape[0],
        mean=float(mean),
        mean_ci=(float(ci[0, 0]), float(ci[1, 0])),
        iqm=float(iqm),
        iqm_ci=(float(ci[0, 1]), float(ci[1, 1])),
        std=float(np.std(matrix, ddof=1)) if matrix.size > 1 else None,
    )


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per column (dataset, or target): the fraction of run pairs in which X scores above Y, ties half, i.e.
    Mann-Whitney U / (n_x n_y). This is rliable's metrics.probability_of_improvement per task, written over
    arrays: rliable's loops over pairs in Python, once per resample, which made a report take minutes. It
    gives the same numbers (tested against rliable)."""
    pairs_x, pairs_y = x[:, None, :], y[None, :, :]  # (n_x, n_y, n_columns): every pair of runs
    return (pairs_x > pairs_y).mean(axis=(0, 1)) + 0.5 * (pairs_x == pairs_y).mean(axis=(0, 1))


def probability_of_improvement(x, y, reps: int = DEFAULT_REPS, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """P(X > Y): the probability that a run of X scores higher than a run of Y on the same dataset (ties count
    half; Mann-Whitney U / (n_x n_y)), averaged over datasets, with its 95% stratified-bootstrap interval.
    x: (n_x, n_tasks), y: (n_y, n_tasks), columns in the same dataset order."""
    x, y = _as_matrix(x), _as_matrix(y)
    point, interval = _interval_estimates({"xy": [x, y]}, lambda a, b: np.mean(_improvement(a, b)), reps, seed)
    low, high = np.ravel(interval["xy"])
    return float(point["xy"]), (float(low), float(high))


def column_means(scores, reps: int = DEFAULT_REPS, seed: int = 0) -> list[tuple[float, tuple[float, float]]]:
    """The mean of each column of (n_runs, n_columns) with its 95% interval, from one stratified bootstrap
    (each column's runs resampled on their own, so each interval is that column's percentile bootstrap): one
    bootstrap for a whole curve (a column per target) instead of one per point."""
    matrix = np.asarray(scores, dtype=np.float64)
    point, interval = _interval_estimates({"x": matrix}, lambda s: np.mean(s, axis=0), reps, seed)
    return [(float(m), (float(lo), float(hi))) for m, lo, hi in zip(point["x"], interval["x"][0], interval["x"][1])]


def mean_interval(scores, reps: int = DEFAULT_REPS, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """The mean of one dataset's scores (n_runs,) with its 95% interval: score_stats' mean and mean_ci (the
    same resamples, so the same numbers) without the IQM, whose trim_mean per resample is most of its time."""
    return column_means(_as_matrix(np.ravel(scores)), reps=reps, seed=seed)[0]


def column_probability_of_improvement(
    x, y, reps: int = DEFAULT_REPS, seed: int = 0
) -> list[tuple[float, tuple[float, float]]]:
    """P(X > Y) in each column of x (n_x, n_columns) and y (n_y, n_columns), each with its 95% interval, from one
    bootstrap (as column_means)."""
    x, y = _as_matrix(x), _as_matrix(y)
    point, interval = _interval_estimates({"xy": [x, y]}, _improvement, reps, seed)
    return [(float(p), (float(lo), float(hi))) for p, lo, hi in zip(point["xy"], interval["xy"][0], interval["xy"][1])]


def rank_test_p(x, y) -> float:
    """Two-sided p-value of the exact Mann-Whitney U test that X and Y score alike (one dataset, seeds as
    samples). A bootstrap interval over three seeds spans little more than the seeds themselves, so it can look
    decisive where an exact test is not: three runs of X all above three runs of Y give p = 2 / C(6, 3) = 0.1.
    scipy comes with the report extra (rliable depends on it)."""
    try:
        from scipy.stats import mannwhitneyu
    except ImportError:
        raise MissingExtraError(f"the rank test needs scipy: {install_hint('report')}") from None
    x, y = (np.ravel(np.asarray(a, dtype=np.float64)) for a in (x, y))
    if x.size == 0 or y.size == 0:
        raise ValueError("no scores")
    # exact: the permutation distribution itself, not the normal approximation (wrong at a handful of seeds).
    # scipy's exact table makes no correction for ties, so tied scores get the asymptotic method, which does.
    method = "exact" if np.unique(np.concatenate([x, y])).size == x.size + y.size else "asymptotic"
    return float(mannwhitneyu(x, y, alternative="two-sided", method=method).pvalue)
