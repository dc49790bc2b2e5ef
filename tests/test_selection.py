"""Which checkpoint, scored on which episodes: the test evaluation (eval.final_episodes on eval.test_seed), the
best checkpoint selected on the training evaluations and scored on the disjoint test episodes, and the refusal
of test seeds that overlap the selection ones."""

import json

import pytest
from helpers import TINY

from decision_minrnn.cli import main
from decision_minrnn.config import load_config
from decision_minrnn.errors import ConfigError
from decision_minrnn.train import train


def tiny(dataset_id, *extra):
    return load_config(
        None,
        [
            f"data.source=[{dataset_id}]",
            *TINY,
            "train.steps=12",
            "train.checkpoint_every=6",
            "train.eval_every=4",
            "eval.episodes=2",
            "eval.max_steps=15",
            "eval.target_returns=[3600, 1800]",
            *extra,
        ],
    )


def _evaluate(capsys, run, *args):
    assert main(["evaluate", "--checkpoint", str(run), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)["results"]


def test_last_and_best_are_scored_on_test_episodes_the_selection_never_saw(tmp_path, tiny_minari, capsys):
    cfg = tiny(tiny_minari[0], "train.keep_best=true", "eval.final_episodes=3", "eval.test_seed=100")
    summary = train(cfg, tmp_path / "r", progress=False)
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in records if "target_return" in r]
    # the training evaluations alone are the curve: 2 episodes at 4, 8, 12 and both targets; no test record
    assert [(r["step"], r["episodes"]) for r in evaluations] == [(s, 2) for s in (4, 4, 8, 8, 12, 12)]
    assert summary["eval_protocol"] == {
        "test_episodes": 3,
        "test_seed": 100,
        "selection_episodes": 2,
        "selection_seed": 0,
    }
    # the run's score is the last checkpoint on seeds 100-102, as `evaluate` gives it
    last = _evaluate(capsys, tmp_path / "r", "--episodes", "3", "--seed", "100")
    assert [r["returns"] for r in summary["eval_all_targets"]] == [r["returns"] for r in last]
    assert summary["eval"]["normalized_mean"] == pytest.approx(last[0]["normalized_mean"])
    # the best was selected on the training evaluations' headline, and tested on seeds 100-102
    headline = [r["normalized_mean"] for r in evaluations if r["target_return"] == 3600]
    best = summary["best"]
    assert best["score"] == pytest.approx(max(headline))
    assert best["step"] == (4, 8, 12)[headline.index(max(headline))]
    tested = _evaluate(capsys, tmp_path / "r", "--best", "--episodes", "3", "--seed", "100")
    assert [r["returns"] for r in best["test_all_targets"]] == [r["returns"] for r in tested]
    assert best["test"]["normalized_mean"] == pytest.approx(tested[0]["normalized_mean"])
    assert json.loads((tmp_path / "r" / "final.json").read_text())["best"] == best


def test_without_final_episodes_the_score_is_the_last_training_evaluation(tmp_path, tiny_minari):
    summary = train(tiny(tiny_minari[0], "train.keep_best=true"), tmp_path / "r", progress=False)
    last = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()][-2]
    assert last["step"] == 12 and summary["eval_all_targets"][0]["returns"] == last["returns"]
    assert "eval_protocol" not in summary and "test" not in summary["best"]


@pytest.mark.parametrize(
    "sets",
    [
        ["eval.final_episodes=5", "eval.test_seed=3"],  # [3, 8) against the selection's [0, 10)
        ["eval.final_episodes=5", "eval.test_seed=0", "eval.seed=4"],  # [0, 5) against [4, 14)
    ],
)
def test_overlapping_test_seeds_are_refused(sets):
    with pytest.raises(ConfigError, match="overlap the training evaluations"):
        load_config(None, sets)


def test_adjacent_test_seeds_are_accepted():
    cfg = load_config(None, ["eval.final_episodes=100", "eval.test_seed=10"])  # [10, 110) after [0, 10)
    assert cfg.eval.test_seed == 10


def test_checkpoints_keep_the_data_episode_returns(tmp_path, tiny_minari):
    import numpy as np

    train(tiny(tiny_minari[0], "eval.episodes=0"), tmp_path / "r", progress=False)
    state = json.loads(next((tmp_path / "r" / "checkpoints").glob("step-*/state.json")).read_text())
    returns = np.array([e["rewards"].sum() for e in tiny_minari[1]])
    assert state["data"]["episode_returns"] == pytest.approx(
        {"min": returns.min(), "median": np.median(returns), "mean": returns.mean(), "max": returns.max()}
    )


def test_each_seed_of_a_group_gets_its_own_test_scores(tmp_path, tiny_minari, capsys):
    cfg = tiny(tiny_minari[0], "train.seeds=[0, 1]", "train.keep_best=true", "eval.final_episodes=2")
    summary = train(cfg, tmp_path / "g", progress=False)
    for seed, run in summary["seeds"].items():
        tested = _evaluate(capsys, tmp_path / "g" / f"seed{seed}", "--best", "--episodes", "2", "--seed", "1000000")
        assert [r["returns"] for r in run["best"]["test_all_targets"]] == [r["returns"] for r in tested]
        assert run["eval_protocol"]["test_episodes"] == 2
