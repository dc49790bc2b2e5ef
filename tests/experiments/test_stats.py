"""The report's statistics against cases small enough to work out by hand."""

import numpy as np
import pytest

from decision_minrnn.experiments.stats import (
    column_means,
    column_probability_of_improvement,
    probability_of_improvement,
    rank_test_p,
    score_stats,
)


def test_bootstrap_interval_of_a_hand_computed_case():
    # Resampling [0, 0, 30] with replacement: the mean is 0, 10, 20 or 30 with probability 8/27, 12/27, 6/27,
    # 1/27. The 2.5% quantile lies in the 0 block (8/27 > 0.025) and the 97.5% one in the 30 block
    # (26/27 < 0.975), so the 95% percentile interval is exactly [0, 30].
    s = score_stats([0.0, 0.0, 30.0], reps=4000)
    assert s.n == 3 and s.mean == pytest.approx(10.0)
    assert s.mean_ci == (pytest.approx(0.0), pytest.approx(30.0))
    assert s.std == pytest.approx(np.sqrt(((0 - 10) ** 2 * 2 + 20**2) / 2))  # sample std, ddof=1: 17.32


def test_interval_narrows_to_the_middle_with_more_seeds():
    # 0 and 10 each with probability 1/2: the bootstrap mean of n draws is 10 * Binomial(n, 1/2) / n. For n = 10
    # its 2.5% / 97.5% quantiles are 2 and 8 successes (P(X <= 1) = 11/1024 < 0.025 < P(X <= 2) = 56/1024).
    s = score_stats([0.0] * 5 + [10.0] * 5, reps=4000)
    assert s.mean == pytest.approx(5.0)
    assert s.mean_ci == (pytest.approx(2.0), pytest.approx(8.0))


def test_iqm_is_the_mean_of_the_middle_half():
    s = score_stats([0.0, 1.0, 2.0, 100.0], reps=300)
    assert s.iqm == pytest.approx(1.5) and s.mean == pytest.approx(25.75)
    assert s.iqm_ci[0] <= s.iqm <= s.iqm_ci[1]


def test_constant_scores_have_a_zero_width_interval_and_one_score_no_std():
    s = score_stats([42.0, 42.0, 42.0], reps=500)
    assert s.mean_ci == (pytest.approx(42.0), pytest.approx(42.0)) and s.std == pytest.approx(0.0)
    assert score_stats([7.0], reps=200).std is None


def test_aggregate_is_stratified_by_dataset():
    # Dataset 2's seeds are all 100, dataset 1's all 0: a stratified resample always keeps both datasets, so
    # every bootstrap mean is exactly 50 (an unstratified one would wander).
    s = score_stats(np.array([[0.0, 100.0], [0.0, 100.0], [0.0, 100.0]]), reps=300)
    assert s.mean == pytest.approx(50.0) and s.mean_ci == (pytest.approx(50.0), pytest.approx(50.0))


def test_probability_of_improvement_hand_cases():
    p, ci = probability_of_improvement([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], reps=500)
    assert p == pytest.approx(1.0) and ci == (pytest.approx(1.0), pytest.approx(1.0))
    # pairs (1 vs 2, 1 vs 2, 3 vs 2, 3 vs 2): X wins 2 of 4
    p, _ = probability_of_improvement([1.0, 3.0], [2.0, 2.0], reps=200)
    assert p == pytest.approx(0.5)
    # ties count half: (5 vs 5) = 0.5, (5 vs 4) = 1 -> 0.75
    p, _ = probability_of_improvement([5.0], [5.0, 4.0], reps=200)
    assert p == pytest.approx(0.75)
    # averaged over datasets: 1 on the first, 0 on the second
    p, _ = probability_of_improvement(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), reps=200)
    assert p == pytest.approx(0.5)


def test_column_statistics_are_each_column_on_its_own():
    """A conditioning curve's points from one bootstrap: each column's interval is its own percentile bootstrap
    (the hand cases above, side by side), and the per-column P(X > Y) is rliable's, ties included."""
    x = np.array([[0.0, 0.0, 42.0], [0.0, 10.0, 42.0], [30.0, 0.0, 42.0]])
    (m0, ci0), (m1, _), (m2, ci2) = column_means(x, reps=4000)
    assert (m0, m1, m2) == (pytest.approx(10.0), pytest.approx(10 / 3), pytest.approx(42.0))
    assert ci0 == (pytest.approx(0.0), pytest.approx(30.0)) and ci2 == (pytest.approx(42.0), pytest.approx(42.0))
    wide = np.column_stack([[0.0] * 5 + [10.0] * 5, np.arange(10.0)])
    assert column_means(wide, reps=4000)[0][1] == (pytest.approx(2.0), pytest.approx(8.0))
    a = np.array([[1.0, 1.0, 5.0], [2.0, 3.0, 5.0], [3.0, 0.0, 5.0]])
    b = np.array([[0.0, 2.0, 5.0], [0.0, 2.0, 4.0]])
    columns = column_probability_of_improvement(a, b, reps=500)
    assert [p for p, _ in columns] == [pytest.approx(1.0), pytest.approx(1 / 3), pytest.approx(0.75)]
    for j, (p, ci) in enumerate(columns):
        assert p == pytest.approx(probability_of_improvement(a[:, j], b[:, j], reps=200)[0])
        assert 0.0 <= ci[0] <= p <= ci[1] <= 1.0
    assert columns[0][1] == (pytest.approx(1.0), pytest.approx(1.0))  # every pair won in every resample


def test_the_array_statistics_give_rliables_numbers():
    """The mean/IQM and P(X > Y) are computed over arrays for speed; on the same resamples they must give what
    rliable's own metrics give, ties and several datasets included."""
    from rliable import metrics

    from decision_minrnn.experiments.stats import _interval_estimates, mean_interval

    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(5, 3)).round(1), rng.normal(size=(4, 3)).round(1)  # rounded: ties happen
    assert len(np.unique(np.concatenate([x.ravel(), y.ravel()]))) < x.size + y.size
    point, interval = _interval_estimates(
        {"x": x}, lambda s: np.array([metrics.aggregate_mean(s), metrics.aggregate_iqm(s)]), 300, 0
    )
    s = score_stats(x, reps=300)
    assert (s.mean, s.iqm) == (pytest.approx(point["x"][0]), pytest.approx(point["x"][1]))
    assert s.mean_ci == (pytest.approx(interval["x"][0, 0]), pytest.approx(interval["x"][1, 0]))
    assert s.iqm_ci == (pytest.approx(interval["x"][0, 1]), pytest.approx(interval["x"][1, 1]))
    point, interval = _interval_estimates({"xy": [x, y]}, metrics.probability_of_improvement, 300, 0)
    p, ci = probability_of_improvement(x, y, reps=300)
    assert p == pytest.approx(point["xy"]) and ci == tuple(pytest.approx(v) for v in np.ravel(interval["xy"]))
    one = score_stats(x[:, 0], reps=300)
    assert mean_interval(x[:, 0], reps=300) == (pytest.approx(one.mean), tuple(pytest.approx(v) for v in one.mean_ci))


def test_rank_test_hand_cases():
    # Complete separation of 3 vs 3: of the C(6, 3) = 20 equally likely splits under "no difference", one puts
    # all of X above Y and one below, so the two-sided p is 2 / 20, however far apart the scores are.
    assert rank_test_p([66.3, 51.9, 60.2], [42.1, 36.9, 37.9]) == pytest.approx(0.1)
    assert rank_test_p([1000.0, 1001.0, 1002.0], [0.0, 1.0, 2.0]) == pytest.approx(0.1)
    # 4 vs 4, separated: 2 / C(8, 4) = 2 / 70
    assert rank_test_p([5, 6, 7, 8], [1, 2, 3, 4]) == pytest.approx(2 / 70)
    # interleaved ranks X = {1, 4}, Y = {2, 3}: U = 2 of 4, the centre of the distribution, p = 1
    assert rank_test_p([1.0, 4.0], [2.0, 3.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no scores"):
        rank_test_p([], [1.0])


def test_intervals_do_not_depend_on_the_global_random_state():
    """rliable draws resamples from numpy's global generator: the report must not change from run to run."""
    scores = [26.5, 30.8, 25.1, 30.0, 58.3]
    np.random.seed(1)
    a = score_stats(scores, reps=300)
    np.random.seed(2)
    np.random.rand(7)
    b = score_stats(scores, reps=300)
    assert a == b
    state = np.random.get_state()
    score_stats(scores, reps=200)
    assert np.array_equal(np.random.get_state()[1], state[1])  # and the caller's global state is left alone
