"""Which checkpoint, scored on which episodes: the test evaluation (eval.final_episodes on eval.test_seed), the
best checkpoint selected on the training evaluations and scored on the disjoint test episodes, and the refusal
of test seeds that overlap the selection ones."""

import json

import pytest
from helpers import tiny_evaluated

from decision_minrnn.cli import main
from decision_minrnn.config import load_config
from decision_minrnn.errors import ConfigError
from decision_minrnn.train import train


def _evaluate(capsys, run, *args):
    assert main(["evaluate", "--checkpoint", str(run), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)["results"]


def test_last_and_best_are_scored_on_test_episodes_the_selection_never_saw(tmp_path, tiny_minari, capsys):
    cfg = tiny_evaluated(tiny_minari[0], "train.keep_best=true", "eval.final_episodes=3", "eval.test_seed=100")
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
    summary = train(tiny_evaluated(tiny_minari[0], "train.keep_best=true"), tmp_path / "r", progress=False)
    last = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()][-2]
    assert last["step"] == 12 and summary["eval_all_targets"][0]["returns"] == last["returns"]
    assert "eval_protocol" not in summary and "test" not in summary["best"]


def test_saving_the_best_checkpoint_keeps_train_keep_checkpoints_step_checkpoints(tmp_path, tiny_minari):
    # The first evaluation (step 4) always saves best; that save used to prune the step checkpoints to
    # save_checkpoint's default of 2 whatever train.keep_checkpoints said.
    sets = ["train.keep_best=true", "train.checkpoint_every=1", "train.keep_checkpoints=4"]
    train(tiny_evaluated(tiny_minari[0], *sets), tmp_path / "r", progress=False, stop_at=4)
    steps = sorted(p.name for p in (tmp_path / "r" / "checkpoints").glob("step-*"))
    assert steps == [f"step-{s:08d}" for s in (1, 2, 3, 4)]
    assert (tmp_path / "r" / "checkpoints" / "best").is_dir()


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

    train(tiny_evaluated(tiny_minari[0], "eval.episodes=0", "train.eval_every=0"), tmp_path / "r", progress=False)
    state = json.loads(next((tmp_path / "r" / "checkpoints").glob("step-*/state.json")).read_text())
    returns = np.array([e["rewards"].sum() for e in tiny_minari[1]])
    assert state["data"]["episode_returns"] == pytest.approx(
        {"min": returns.min(), "median": np.median(returns), "mean": returns.mean(), "max": returns.max()}
    )


def test_each_seed_of_a_group_gets_its_own_test_scores(tmp_path, tiny_minari, capsys):
    cfg = tiny_evaluated(tiny_minari[0], "train.seeds=[0, 1]", "train.keep_best=true", "eval.final_episodes=2")
    summary = train(cfg, tmp_path / "g", progress=False)
    for seed, run in summary["seeds"].items():
        tested = _evaluate(capsys, tmp_path / "g" / f"seed{seed}", "--best", "--episodes", "2", "--seed", "1000000")
        assert [r["returns"] for r in run["best"]["test_all_targets"]] == [r["returns"] for r in tested]
        assert run["eval_protocol"]["test_episodes"] == 2


# --- evaluate --target-sweep -------------------------------------------------------------------------------

HOPPER_REFS = (-20.272305, 3234.3)  # tests/helpers.make_minari_dataset's reference scores


def _normalized(ret):
    lo, hi = HOPPER_REFS
    return 100 * (ret - lo) / (hi - lo)


@pytest.fixture
def tiny_run(tmp_path, tiny_minari):
    train(tiny_evaluated(tiny_minari[0], "eval.episodes=0", "train.eval_every=0"), tmp_path / "r", progress=False)
    return tmp_path / "r"


def test_target_sweep_spans_median_to_one_and_a_half_times_the_best_and_matches_single_targets(
    tiny_run, tiny_minari, capsys
):
    import numpy as np

    assert main(["evaluate", "--checkpoint", str(tiny_run), "--target-sweep", "3", "--episodes", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    sweep = json.loads((tiny_run / "target_sweep.json").read_text())
    returns = np.array([e["rewards"].sum() for e in tiny_minari[1]])
    low, high = np.median(returns), 1.5 * returns.max()
    assert sweep["target_sweep"]["range"] == pytest.approx([low, high], rel=1e-6)
    targets = [r["target_return"] for r in sweep["results"]]
    assert targets == pytest.approx([low, (low + high) / 2, high], rel=1e-6)
    for r in sweep["results"]:  # each point is what a plain evaluation at that one target gives
        single = _evaluate(capsys, tiny_run, "--target-return", str(r["target_return"]), "--episodes", "2")[0]
        assert r["returns"] == single["returns"]
        assert r["target_normalized"] == pytest.approx(_normalized(r["target_return"]))
        assert r["normalized_mean"] == pytest.approx(_normalized(np.mean(single["returns"])))
    refs = sweep["target_sweep"]
    assert refs["episode_returns_normalized"]["max"] == pytest.approx(_normalized(returns.max()), rel=1e-6)
    assert refs["label"] == "test/hopper/tiny-v0" and refs["best_checkpoint"] is False


def test_targets_named_by_the_data_are_its_episode_returns(tiny_run, tiny_minari, capsys):
    import numpy as np

    returns = np.array([e["rewards"].sum() for e in tiny_minari[1]])
    named = _evaluate(capsys, tiny_run, "--target-return", "best-episode", "1000", "median-episode", "--episodes", "2")
    assert [r["target_return"] for r in named] == pytest.approx([returns.max(), 1000.0, np.median(returns)], rel=1e-6)
    # the same episodes as the numbers themselves
    numbers = [str(r["target_return"]) for r in named]
    assert [r["returns"] for r in _evaluate(capsys, tiny_run, "--target-return", *numbers, "--episodes", "2")] == [
        r["returns"] for r in named
    ]


@pytest.mark.parametrize(
    "word, message",
    [("best", "give a return or one of best-episode"), ("nan", "finite"), ("inf", "finite")],
)
def test_a_target_that_is_neither_a_return_nor_a_data_name_is_one_line(tiny_run, capsys, word, message):
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--episodes", "1", "--target-return", word]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_target_range_overrides_the_data_range(tiny_run, capsys):
    out = tiny_run.parent / "sweep.json"
    args = ["--target-sweep", "2", "--target-range", "100", "300", "--episodes", "1", "--sweep-out", str(out)]
    assert main(["evaluate", "--checkpoint", str(tiny_run), *args]) == 0
    sweep = json.loads(out.read_text())
    assert [r["target_return"] for r in sweep["results"]] == [100.0, 300.0]
    assert sweep["target_sweep"]["range_from"] == "--target-range"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target-sweep", "1"], "at least 2 target returns"),
        (["--target-sweep", "3", "--target-range", "5", "5"], "low < high"),
        (["--target-sweep", "3", "--target-range", "nan", "5"], "two finite returns"),
        (["--target-range", "1", "5"], "give --target-sweep N too"),
        (["--target-sweep", "3", "--target-return", "3600"], "drop --target-return"),
        (["--sweep-out", "x.json"], "are for --target-sweep"),
        (["--target-sweep", "3", "--sweep-out", "/nonexistent/dir/x.json"], "does not exist"),
    ],
)
def test_bad_target_sweeps_are_one_line(tiny_run, capsys, args, message):
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--episodes", "1", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tiny_run / "target_sweep.json").exists()


def test_a_sweep_never_replaces_a_file_that_is_not_an_earlier_sweep(tiny_run, capsys):
    sweep = ["evaluate", "--checkpoint", str(tiny_run), "--target-sweep", "2", "--episodes", "1"]
    assert main(sweep) == 0
    first = (tiny_run / "target_sweep.json").read_text()
    assert main(sweep) == 2 and "pass --force" in capsys.readouterr().err
    assert main([*sweep, "--force"]) == 0  # an earlier sweep may be replaced
    mine = tiny_run.parent / "notes.json"
    mine.write_text('{"mine": 1}')
    assert main([*sweep, "--sweep-out", str(mine), "--force"]) == 2
    assert "not an earlier target sweep" in capsys.readouterr().err and mine.read_text() == '{"mine": 1}'
    assert json.loads(first)["target_sweep"]["targets"]  # the run directory is still one --force may replace
    from decision_minrnn.rundir import foreign_entry

    assert foreign_entry(tiny_run) is None


def test_a_checkpoint_without_the_data_returns_needs_a_range(tiny_run, capsys):
    for state in (tiny_run / "checkpoints").glob("step-*/state.json"):
        saved = json.loads(state.read_text())
        del saved["data"]["episode_returns"]  # as in every checkpoint written before they were kept
        state.write_text(json.dumps(saved))
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--target-sweep", "3", "--episodes", "1"]) == 2
    assert "--target-range LOW HIGH" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--target-return", "best-episode", "--episodes", "1"]) == 2
    assert "give the return as a number" in capsys.readouterr().err


# --- report: conditioning curves, last and best ------------------------------------------------------------


def _fake_sweep(run, targets, achieved, episodes=10):
    results = [{"target_normalized": t, "normalized_mean": a} for t, a in zip(targets, achieved)]
    info = {"episodes": episodes, "behaviour_normalized": 35.0, "episode_returns_normalized": {"max": 90.0}}
    (run / "target_sweep.json").write_text(json.dumps({"step": 6, "target_sweep": info, "results": results}))


def test_a_sweep_keeps_its_episodes_and_a_non_finite_episode_leaves_it_out(tmp_path):
    from decision_minrnn.experiments.collect import read_sweep

    _fake_sweep(tmp_path, [30, 60], [40, 70])
    sweep, why = read_sweep(tmp_path)
    assert why is None and sweep.episode_scores is None  # means only: nothing per episode to count
    data = json.loads((tmp_path / "target_sweep.json").read_text())
    for result, scores in zip(data["results"], ([35.0, 45.0], [70.0, 70.0])):
        result["normalized"] = scores
    (tmp_path / "target_sweep.json").write_text(json.dumps(data))
    assert read_sweep(tmp_path)[0].episode_scores == [[35.0, 45.0], [70.0, 70.0]]
    data["results"][1]["normalized"] = [70.0, float("nan")]
    (tmp_path / "target_sweep.json").write_text(json.dumps(data))
    sweep, why = read_sweep(tmp_path)
    assert sweep is None and "non-finite" in why


def test_report_draws_conditioning_and_reads_where_each_backbone_peaks(tmp_path):
    pytest.importorskip("rliable")
    from helpers import fake_run

    from decision_minrnn.experiments.report import report

    for seed, shift in ((0, 0.0), (1, 2.0)):
        _fake_sweep(fake_run(tmp_path, "hopper-medium", "mingru", seed, 40.0), [30, 60, 90], [40 + shift, 70, 60])
        _fake_sweep(fake_run(tmp_path, "hopper-medium", "transformer", seed, 41.0), [30, 60, 90], [35, 50, 65 + shift])
    result = report(tmp_path, out=tmp_path / "out", reps=200)
    rows = {r.backbone: r.to_dict() for r in result["stats"]["conditioning"]}
    assert rows["mingru"]["means"] == {"30.0": 41.0, "60.0": 70.0, "90.0": 60.0}
    assert (rows["mingru"]["peak_target"], rows["mingru"]["peak_achieved"]) == (60.0, 70.0)
    assert (rows["transformer"]["peak_target"], rows["transformer"]["peak_achieved"]) == (90.0, 66.0)
    assert rows["mingru"]["best_episode"] == 90.0 and rows["mingru"]["n"] == 2
    # intervals over the seeds: both seeds at 70 -> [70, 70]; 40 and 42 -> inside [40, 42]
    assert rows["mingru"]["cis"]["60.0"] == [pytest.approx(70.0), pytest.approx(70.0)]
    assert 40.0 <= rows["mingru"]["cis"]["30.0"][0] <= 41.0 <= rows["mingru"]["cis"]["30.0"][1] <= 42.0
    # P(mingru > transformer) per target: every pair won at 30 and 60 (40, 42 > 35; 70 > 50), lost at 90
    versus = rows["mingru"]["vs_baseline"]
    assert versus["baseline"] == "transformer" and "vs_baseline" not in rows["transformer"]
    assert {t: v["probability"] for t, v in versus["targets"].items()} == {"30.0": 1.0, "60.0": 1.0, "90.0": 0.0}
    assert "| mingru (n=2) | 41.0 [" in result["table"] and "| **70.0 [70.0, 70.0]** |" in result["table"]
    assert "| P(mingru > transformer) | 1.00 [1.00, 1.00] | 1.00 [1.00, 1.00] | 0.00 [0.00, 0.00] |" in result["table"]
    assert (
        "| hopper-medium | mingru | 2 | 30.0: 41.0, 60.0: 70.0, 90.0: 60.0 | 60.0 (70.0) | 35.0 | 90.0 |"
        in (result["table"])
    )
    assert (tmp_path / "out" / "conditioning.png").stat().st_size > 0


def test_part_references_give_each_part_of_a_composed_dataset_its_own_level(tmp_path, minari_root, capsys):
    """medium-expert's question, "does it reach the expert's level when asked?", needs the expert part's mean
    episode, which a checkpoint of the composed data does not keep: --part-references loads the parts."""
    pytest.importorskip("rliable")
    from helpers import fake_run

    from decision_minrnn.synthetic import make_minari_dataset, synthetic_episodes

    low, high = synthetic_episodes(n_episodes=3, seed=1), synthetic_episodes(n_episodes=4, seed=2)
    for e in high:
        e["rewards"] = e["rewards"] + 5.0  # a better policy's episodes
    make_minari_dataset("test/hopper/low-v0", low, ref_scores=(0.0, 200.0))
    make_minari_dataset("test/hopper/high-v0", high, ref_scores=(0.0, 200.0))
    source = "test/hopper/low-v0+test/hopper/high-v0"
    # by hand: each part's episodes, normalized 100 * (R - 0) / (200 - 0), and their means
    normalized = {
        "test/hopper/low-v0": [100 * float(e["rewards"].sum()) / 200 for e in low],
        "test/hopper/high-v0": [100 * float(e["rewards"].sum()) / 200 for e in high],
    }
    expected = {name: sum(v) / len(v) for name, v in normalized.items()}
    assert expected["test/hopper/high-v0"] > expected["test/hopper/low-v0"] + 2
    # the best part's level: the lower quartile of its 4 episodes, interpolated 3/4 of the way from the
    # lowest to the second lowest (numpy's default, the "linear" method of Hyndman and Fan's type 7)
    ranked = sorted(normalized["test/hopper/high-v0"])
    level = ranked[0] + 0.75 * (ranked[1] - ranked[0])
    share = sum(v >= level for v in normalized["test/hopper/low-v0"] + ranked) / 7
    # each seed's episodes at the three targets: below the level, one at it and one below, above it
    per_episode = [[level - 1, level - 1], [level, level - 0.5], [level + 5, level + 5]]
    for seed in (0, 1):
        run = fake_run(tmp_path / "runs", "hopper-tiny-me", "mingru", seed, 40.0)
        _fake_sweep(run, [30, 60, 90], [40, 70, 60])
        sweep = json.loads((run / "target_sweep.json").read_text())
        sweep["target_sweep"]["dataset"] = source
        for result, scores in zip(sweep["results"], per_episode):
            result["normalized"] = scores
        (run / "target_sweep.json").write_text(json.dumps(sweep))
    runs, out = str(tmp_path / "runs"), str(tmp_path / "out")
    assert main(["report", runs, "--out", out, "--reps", "200", "--part-references"]) == 0
    row = json.loads((tmp_path / "out" / "stats.json").read_text())["conditioning"][0]
    assert row["source"] == source and row["parts"] == pytest.approx(expected)
    top = row["top_part"]
    assert top["name"] == "test/hopper/high-v0" and top["level"] == pytest.approx(level)
    assert top["data_share"] == pytest.approx(share) and 0 < share < 1
    # summed over both seeds: at the level counts, just below it does not
    assert top["at_target"] == {"30.0": [0, 4], "60.0": [2, 4], "90.0": [4, 4]}
    table = (tmp_path / "out" / "table.md").read_text()
    assert f"| low-v0 {expected['test/hopper/low-v0']:.1f}, high-v0 {expected['test/hopper/high-v0']:.1f} |" in table
    assert "| mingru: episodes at high-v0's level | 0/4 | 2/4 | 4/4 |" in table
    assert f"high-v0's level is {level:.1f}, the 25th percentile of its episodes (75% of them" in table
    assert f"{100 * share:.0f}% of the training data's episodes" in table
    # without the option the report needs no data, and says nothing about parts
    capsys.readouterr()
    assert main(["report", runs, "--out", str(tmp_path / "plain"), "--reps", "200"]) == 0
    assert "parts' mean episodes" not in (tmp_path / "plain" / "table.md").read_text()
    # a part that cannot be loaded: one line, exit 2, no report written
    sweep["target_sweep"]["dataset"] = "test/hopper/low-v0+test/hopper/missing-v0"
    for path in (tmp_path / "runs").rglob("target_sweep.json"):
        path.write_text(json.dumps(sweep))
    assert main(["report", runs, "--out", str(tmp_path / "bad"), "--reps", "200", "--part-references"]) == 2
    err = capsys.readouterr().err
    assert "missing-v0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_report_puts_last_held_out_best_and_optimistic_max_side_by_side(tmp_path):
    pytest.importorskip("rliable")
    from helpers import fake_run

    from decision_minrnn.experiments.report import report

    for seed, (last, best, curve) in enumerate([(40.0, 44.0, [30.0, 50.0, 40.0]), (42.0, 41.0, [45.0, 39.0, 42.0])]):
        run = fake_run(
            tmp_path,
            "hopper-medium",
            "mingru",
            seed,
            last,
            eval_protocol={"test_episodes": 100, "test_seed": 10**6, "selection_episodes": 10, "selection_seed": 0},
            best={"step": 4, "score": max(curve), "test": {"normalized_mean": best}},
        )
        lines = [{"step": s, "target_return": 3600.0, "normalized_mean": v} for s, v in zip((2, 4, 6), curve)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = report(tmp_path, out=tmp_path / "out", reps=200)
    (row,) = result["stats"]["last_best"]
    assert row["last"]["mean"] == 41.0 and row["best"]["mean"] == 42.5 and row["max"]["mean"] == 47.5
    assert row["best_minus_last"] == pytest.approx(1.5) and row["test_episodes"] == [100]
    table = result["table"]
    assert "max over training (optimistic)" in table and "best, held-out test" in table
    assert "Test episodes per target: 100." in table
    assert "DMamba: max over training evaluations" in table  # how the published column was taken
    assert "minLSTM: not stated by Feng et al.\n" in table  # one full stop, not two


def test_a_second_sweep_into_the_same_file_at_once_is_refused(tiny_run, capsys):
    """Issue 36, class 3: two `evaluate --target-sweep` writing one --sweep-out would both print "wrote"."""
    from decision_minrnn.rundir import output_lock

    out = tiny_run / "target_sweep.json"
    with output_lock(out):  # as a first evaluate holds it while it rolls out
        capsys.readouterr()
        assert main(["evaluate", "--checkpoint", str(tiny_run), "--target-sweep", "3", "--episodes", "1"]) == 2
        assert f"{out} is being written by pid" in capsys.readouterr().err
    assert not out.exists()
    assert main(["evaluate", "--checkpoint", str(tiny_run), "--target-sweep", "3", "--episodes", "1"]) == 0


def test_report_leaves_out_a_sweep_of_another_checkpoint_than_final_json(tiny_run, capsys):
    """Issue 36, class 3: a sweep taken of an older step, or while the run was training, is not drawn as the
    last checkpoint's curve."""
    from decision_minrnn.experiments.collect import collect_runs

    assert main(["evaluate", "--checkpoint", str(tiny_run), "--target-sweep", "3", "--episodes", "1"]) == 0
    final = json.loads((tiny_run / "final.json").read_text())  # the run trained without evaluations: give it a score
    final["eval"] = {"target_return": 3600.0, "normalized_mean": 10.0, "score_reference": "D4RL table"}
    (tiny_run / "final.json").write_text(json.dumps(final))
    (run,), _ = collect_runs(tiny_run.parent)
    assert run.sweep is not None and run.sweep.step == run.steps
    sweep = json.loads((tiny_run / "target_sweep.json").read_text())
    (tiny_run / "target_sweep.json").write_text(json.dumps({**sweep, "step": run.steps - 6}))
    (run,), skipped = collect_runs(tiny_run.parent)
    assert run.sweep is None
    assert any(f"was taken of step {run.steps - 6}, not of final.json's last checkpoint" in s.reason for s in skipped)
