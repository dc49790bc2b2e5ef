import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import FAST, fake_run, make_minari_dataset, synthetic_episodes

from decision_minrnn.cli import main
from decision_minrnn.errors import ConfigError, MissingExtraError
from decision_minrnn.experiments.grid import load_grid
from decision_minrnn.experiments.report import report
from decision_minrnn.experiments.sweep import sweep


@pytest.fixture
def tiny_grid(tmp_path, minari_root):
    configs = {}
    for label, seed in [("hopper-medium", 0), ("hopper-medium-replay", 1)]:
        dataset_id = f"test/hopper/{label}-v0"
        make_minari_dataset(dataset_id, synthetic_episodes(6, seed=seed))
        path = tmp_path / f"{label}.yaml"
        path.write_text(yaml.safe_dump({"data": {"source": dataset_id}}))
        configs[label] = str(path)
    grid = tmp_path / "tiny.yaml"
    grid.write_text(
        yaml.safe_dump(
            {"name": "tiny", "datasets": configs, "backbones": ["mingru", "transformer"], "seeds": [0, 1], "set": FAST}
        )
    )
    return grid


def test_grid_expands_datasets_backbones_seeds(tiny_grid):
    grid = load_grid(tiny_grid)
    assert len(grid.runs) == 8
    assert {(r.dataset, r.backbone, r.seed) for r in grid.runs} == {
        (d, b, s) for d in ("hopper-medium", "hopper-medium-replay") for b in ("mingru", "transformer") for s in (0, 1)
    }
    cfg = grid.runs[0].config()
    assert cfg.train.steps == 6 and cfg.name == "hopper-medium/mingru/seed0"


@pytest.mark.slow
def test_sweep_on_local_ray_then_report_then_rerun_only_missing(tiny_grid, tmp_path):
    runs_root = tmp_path / "runs"
    first = sweep(str(tiny_grid), runs_root=str(runs_root), max_parallel=2, log=lambda *_: None)
    assert first["ran"] == 8 and first["failed"] == 0, first["records"]
    root = runs_root / "tiny"
    finals = sorted(root.rglob("final.json"))
    assert len(finals) == 8

    result = report(root, tmp_path / "report", reps=500)
    table = (tmp_path / "report" / "table.md").read_text()
    assert "| hopper-medium-replay | mingru | 2 |" in table and "| hopper-medium | transformer | 2 |" in table
    # the paper's hopper-medium-replay minGRU (90.5 ± 0.9) is not beside runs on other data of that label
    assert "90.5 ± 0.9" not in table and "| hopper-medium-replay | mingru | 2 |" in table
    assert "| **all 2 datasets** | mingru | 2 |" in table and "| mingru | transformer |" in table
    assert "Skipped" not in table
    csv_lines = (tmp_path / "report" / "table.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 4
    for png in ("scores.png", "learning_curves.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
    assert result["runs"] == 8
    cell = next(c for c in result["stats"]["cells"] if c["dataset"] == "hopper-medium" and c["backbone"] == "mingru")
    seeds = [
        json.loads((root / "hopper-medium" / "mingru" / f"seed{s}" / "final.json").read_text())["eval"][
            "normalized_mean"
        ]
        for s in (0, 1)
    ]
    assert cell["seeds"] == {"0": seeds[0], "1": seeds[1]} and cell["mean"] == pytest.approx(sum(seeds) / 2)
    assert cell["behaviour"] is not None  # the dataset's behaviour policy, from final.json
    summary = json.loads((root / "hopper-medium" / "mingru" / "seed0" / "final.json").read_text())
    assert summary["label"] == "hopper-medium" and summary["dataset"] != "hopper-medium"  # the grid's label

    # Interrupt: two runs lose their final result (one mid-way with a checkpoint, one from scratch).
    (root / "hopper-medium" / "mingru" / "seed1" / "final.json").unlink()
    import shutil

    shutil.rmtree(root / "hopper-medium-replay" / "transformer" / "seed0")
    second = sweep(str(tiny_grid), runs_root=str(runs_root), use_ray=False, log=lambda *_: None)
    assert second["skipped"] == 6 and second["ran"] == 2 and second["failed"] == 0
    assert len(sorted(root.rglob("final.json"))) == 8


@pytest.mark.slow
def test_a_sweep_with_seed_groups_trains_each_dataset_backbone_seeds_together(tiny_grid, tmp_path):
    runs_root = tmp_path / "runs"
    out = sweep(str(tiny_grid), runs_root=str(runs_root), use_ray=False, seed_groups=True, log=lambda *_: None)
    assert out["ran"] == 8 and out["failed"] == 0, out["records"]
    assert {r["group"] for r in out["records"]} == {"0,1"}  # 4 groups of 2 seeds, one process each
    root = runs_root / "tiny"
    for final in root.rglob("final.json"):
        summary = json.loads(final.read_text())
        assert summary["finished"] and final.parent.name == f"seed{summary['seed']}"
        assert summary["name"] == "/".join(final.parent.relative_to(root).parts)  # the grid's usual run names
    assert len(list(root.rglob("final.json"))) == 8
    assert report(root, tmp_path / "report", reps=200)["runs"] == 8
    # One seed loses its result and is redone alone; the finished ones are skipped.
    (root / "hopper-medium" / "mingru" / "seed1" / "final.json").unlink()
    again = sweep(str(tiny_grid), runs_root=str(runs_root), use_ray=False, seed_groups=True, log=lambda *_: None)
    assert again["skipped"] == 7 and again["ran"] == 1 and again["failed"] == 0


def test_a_failed_run_is_reported_and_the_others_continue(tmp_path, minari_root, capsys):
    make_minari_dataset("test/hopper/ok-v0", synthetic_episodes(4))
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump({"data": {"source": "test/hopper/ok-v0"}}))
    bad.write_text(yaml.safe_dump({"data": {"source": "test/hopper/missing-v0"}}))
    grid = tmp_path / "g.yaml"
    grid.write_text(
        yaml.safe_dump(
            {
                "name": "g",
                "datasets": {"hopper-medium": str(good), "hopper-medium-expert": str(bad)},
                "backbones": ["mingru"],
                "seeds": [0],
                "set": FAST,
            }
        )
    )
    assert main(["sweep", "--grid", str(grid), "--runs-root", str(tmp_path / "runs"), "--no-ray"]) == 1
    out = capsys.readouterr().out
    assert "FAILED  hopper-medium-expert/mingru/seed0" in out and "missing-v0" in out
    assert "done    hopper-medium/mingru/seed0" in out
    summary = json.loads((tmp_path / "runs" / "g" / "sweep_summary.json").read_text())
    assert summary["failed"] == 1 and summary["ran"] == 2


def test_missing_ray_is_a_clear_error(tiny_grid, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError, match="pip install"):
        sweep(str(tiny_grid), runs_root=str(tmp_path / "runs"), log=lambda *_: None)


@pytest.mark.parametrize(
    "content,message",
    [("datasets: {}\nbackbones: [mingru]\n", "datasets"), ("datasets: {a: x.yaml}\nbogus: 1\n", "bogus")],
)
def test_bad_grid_files(tmp_path, capsys, content, message):
    grid = tmp_path / "g.yaml"
    grid.write_text(content)
    assert main(["sweep", "--grid", str(grid), "--runs-root", str(tmp_path / "runs")]) == 2
    assert message in capsys.readouterr().err


def test_report_without_runs_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_learning_curves_say_whether_the_last_third_is_flat_within_the_final_interval(tmp_path):
    pytest.importorskip("rliable")
    root = tmp_path / "runs"
    # At target 3600 mingru's curve rises through its last third; at 1800 it is flat. The transformer has one
    # seed: no interval, so no verdict.
    curves = {
        ("mingru", 0): {3600: [10, 20, 30, 40], 1800: [40, 50, 51, 51]},
        ("mingru", 1): {3600: [12, 22, 32, 44], 1800: [41, 52, 52, 52]},
        ("transformer", 0): {3600: [10, 20, 30, 40], 1800: [40, 50, 50, 50]},
    }
    for (backbone, seed), by_target in curves.items():
        run = fake_run(root, "hopper-medium", backbone, seed, by_target[3600][-1], steps=4000)
        lines = [
            json.dumps({"step": 1000 * (i + 1), "target_return": float(t), "normalized_mean": float(v)})
            for t, values in by_target.items()
            for i, v in enumerate(values)
        ]
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    result = report(root, tmp_path / "report", reps=200)
    rows = {(r["target_return"], r["backbone"]): r for r in result["stats"]["curves"]}
    assert rows[(3600.0, "mingru")]["means"] == {"1000": 11.0, "2000": 21.0, "3000": 31.0, "4000": 42.0}
    assert rows[(3600.0, "mingru")]["final_ci"] == [40.0, 44.0]  # two seeds: the bootstrap spans both
    assert rows[(3600.0, "mingru")]["plateau"] is False  # 31.0 at step 3000 lies below [40, 44]
    assert rows[(1800.0, "mingru")]["plateau"] is True  # 51.5 at step 3000 lies inside [51, 52]
    assert rows[(3600.0, "transformer")]["plateau"] is None and rows[(3600.0, "transformer")]["final_ci"] is None
    table = (tmp_path / "report" / "table.md").read_text()
    assert (
        "| hopper-medium | 3600 | mingru | 2 | 1000: 11.0, 2000: 21.0, 3000: 31.0, 4000: 42.0 "
        "| 42.0 [40.0, 44.0] | no |" in table
    )


def test_report_groups_by_the_label_and_reads_runs_written_before_labels(tmp_path):
    pytest.importorskip("rliable")
    root = tmp_path / "runs"
    fake_run(root, "hopper-medium", "mingru", 0, 50.0)
    run = fake_run(root, "other-dir", "mingru", 1, 60.0)  # a label that is not its run name's first part
    summary = json.loads((run / "final.json").read_text())
    (run / "final.json").write_text(json.dumps({**summary, "label": "hopper-medium"}))
    legacy = fake_run(root, "hopper-medium", "mingru", 2, 70.0)  # final.json from before data.label
    summary = json.loads((legacy / "final.json").read_text())
    (legacy / "final.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "label"}))
    result = report(root, tmp_path / "report", reps=200)
    (cell,) = result["stats"]["cells"]
    assert cell["dataset"] == "hopper-medium" and cell["seeds"] == {"0": 50.0, "1": 60.0, "2": 70.0}


def test_report_lists_every_skipped_run_with_its_reason(tmp_path, capsys):
    root = tmp_path / "runs"
    for seed, score in enumerate([40.0, 50.0]):
        fake_run(root, "hopper-medium", "mingru", seed, score)
    unfinished = root / "hopper-medium" / "mingru" / "seed2"
    unfinished.mkdir(parents=True)
    (unfinished / "config.yaml").write_text("name: x\n")
    (fake_run(root, "hopper-medium", "mingru", 3, 1.0) / "final.json").write_text("{not json")
    (fake_run(root, "hopper-medium", "mingru", 4, 1.0) / "final.json").write_text("null")
    fake_run(root, "hopper-medium", "mingru", 5, 1.0, finished=False)
    fake_run(root, "hopper-medium", "mingru", 6, None)
    (fake_run(root, "hopper-medium", "mingru", 7, 60.0) / "metrics.jsonl").write_text(
        json.dumps({"step": 3, "target_return": 3600.0, "normalized_mean": 20.0}) + '\n{"step": 6, "targ'
    )
    assert main(["report", str(root), "--reps", "300"]) == 0
    out = capsys.readouterr().out
    assert "| hopper-medium | mingru | 3 | 50.0 [" in out  # seeds 0, 1 and 7; the others left out
    assert "Skipped or partly used (6):" in out
    for seed, reason in [
        (2, "unfinished (no final.json yet)"),
        (3, "final.json unreadable (JSONDecodeError)"),
        (4, "final.json does not hold a run summary"),
        (5, "unfinished (final.json says finished: false)"),
        (6, "no normalized evaluation score"),
        (7, "metrics.jsonl line 2 unreadable; the curve uses the rest"),
    ]:
        assert f"seed{seed}: {reason}" in out, reason
    stats = json.loads((root / "report" / "stats.json").read_text())
    assert len(stats["skipped"]) == 6 and stats["cells"][0]["seeds"] == {"0": 40.0, "1": 50.0, "7": 60.0}


def test_report_of_some_datasets_leaves_the_others_out_of_every_table_and_aggregate(tmp_path, capsys):
    # A grid part way through: walker2d has one seed finished and one running; the report of hopper alone
    # must not average it in, nor list its unfinished run.
    root = tmp_path / "runs"
    for seed, score in enumerate([40.0, 50.0]):
        fake_run(root, "hopper-medium", "mingru", seed, score)
        fake_run(root, "hopper-medium-replay", "mingru", seed, score / 2)
    fake_run(root, "walker2d-medium", "mingru", 0, 99.0)
    running = root / "walker2d-medium" / "mingru" / "seed1"
    running.mkdir(parents=True)
    (running / "config.yaml").write_text("name: x\n")
    out = tmp_path / "report"
    argv = ["report", str(root), "--reps", "200", "--out", str(out), "--datasets", "hopper-medium"]
    assert main([*argv, "hopper-medium-replay"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert {c["dataset"] for c in stats["cells"]} == {"hopper-medium", "hopper-medium-replay"}
    assert stats["skipped"] == []
    table = capsys.readouterr().out
    assert "walker2d" not in table and "**all 2 datasets** | mingru | 2 | 33.8 [" in table
    # A label no finished run has is one line naming the labels there are, and nothing is written.
    (out / "table.md").unlink()
    assert main([*argv, "hopper-expert"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "hopper-expert" in err and "walker2d-medium" in err
    assert not (out / "table.md").exists()


def test_report_with_only_unusable_runs_says_why(tmp_path, capsys):
    root = tmp_path / "runs"
    fake_run(root, "hopper-medium", "mingru", 0, 1.0, finished=False)
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no finished runs") and "finished: false" in err and len(err.splitlines()) == 1


def test_probability_of_improvement_against_the_transformer(tmp_path):
    root = tmp_path / "runs"
    for seed in range(3):
        fake_run(root, "hopper-medium", "mingru", seed, 50.0 + seed)
        fake_run(root, "hopper-medium", "transformer", seed, 10.0 + seed)
        fake_run(root, "walker2d-medium", "mingru", seed, 5.0 + seed)
        fake_run(root, "walker2d-medium", "transformer", seed, 20.0 + seed)
    result = report(root, reps=100)
    rows = {p["datasets"]: p for p in result["stats"]["improvement"]}
    assert set(rows) == {"hopper-medium", "walker2d-medium", "all 2 datasets"}
    assert {(p["x"], p["y"]) for p in rows.values()} == {("mingru", "transformer")}
    assert rows["hopper-medium"]["probability"] == pytest.approx(1.0)  # wins every pair on hopper
    assert rows["walker2d-medium"]["probability"] == pytest.approx(0.0)  # and loses every pair on walker2d
    assert rows["all 2 datasets"]["probability"] == pytest.approx(0.5)
    (agg,) = [a for a in result["stats"]["aggregate"] if a["backbone"] == "mingru"]
    assert agg["mean"] == pytest.approx(np.mean([50, 51, 52, 5, 6, 7])) and agg["n"] == 3


@pytest.mark.parametrize(
    "content,message",
    [
        ("name: ../../escape\ndatasets: {a: x.yaml}\nbackbones: [mingru]\n", "name '../../escape' must be a plain"),
        ("datasets: {../up: x.yaml}\nbackbones: [mingru]\n", "dataset label '../up'"),
        ("datasets: {a: x.yaml}\nbackbones: [mingru]\nseeds: [zero]\n", "'seeds' must be integers"),
        ("datasets: {a: x.yaml}\nbackbones: [mingru]\nbackbone_set: {mingur: [model.dropout=0.0]}\n", "['mingur']"),
    ],
)
def test_grid_files_that_would_escape_or_be_ignored_are_refused(tmp_path, capsys, content, message):
    grid = tmp_path / "g.yaml"
    grid.write_text(content)
    assert main(["sweep", "--grid", str(grid), "--runs-root", str(tmp_path / "runs"), "--no-ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("module", ["rliable", "matplotlib"])
def test_report_without_its_extra_names_it(tmp_path, monkeypatch, capsys, module):
    root = tmp_path / "runs"
    fake_run(root, "hopper-medium", "mingru", 0, 40.0)
    monkeypatch.setitem(sys.modules, module, None)
    assert main(["report", str(root), "--reps", "100"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install -e '.[report]' in your checkout" in err


def test_a_grid_with_holes_still_compares_where_both_ran_and_gives_no_interval_for_one_seed(tmp_path):
    root = tmp_path / "runs"
    for seed in range(3):
        fake_run(root, "hopper-medium", "mingru", seed, 50.0 + seed)
        fake_run(root, "hopper-medium", "transformer", seed, 10.0 + seed)
    fake_run(root, "walker2d-medium", "mingru", 0, 5.0)  # walker2d: one mingru seed, no transformer yet
    result = report(root, reps=300)
    assert [p["datasets"] for p in result["stats"]["improvement"]] == ["hopper-medium"]
    assert "| walker2d-medium | mingru | 1 | 5.0 [n=1: none] |" in result["table"]


def _fake_two_target_run(root, label, backbone, seed, at_3600, at_1800):
    targets = [
        {"target_return": 3600.0, "normalized_mean": at_3600},
        {"target_return": 1800.0, "normalized_mean": at_1800},
    ]
    return fake_run(root, label, backbone, seed, at_3600, eval_all_targets=targets)


def test_compare_puts_two_runs_dirs_side_by_side_where_both_have_runs(tmp_path, capsys):
    pytest.importorskip("rliable")
    a, b = tmp_path / "interleaved", tmp_path / "fused"
    for seed in range(3):
        _fake_two_target_run(a, "hopper-medium", "mingru", seed, 60.0 + seed, 40.0 + seed)
        _fake_two_target_run(b, "hopper-medium", "mingru", seed, 50.0 + 2 * seed, 41.5 + seed)
        _fake_two_target_run(b, "hopper-medium", "transformer", seed, 1.0, 1.0)  # only in B: not compared
        _fake_two_target_run(b, "walker2d-medium", "mingru", seed, 1.0, 1.0)  # only in B: not compared
    fake_run(a, "hopper-medium", "mingru", 9, 1.0, finished=False)
    out = tmp_path / "comparison"
    argv = ["compare", str(a), str(b), "--labels", "interleaved", "fused", "--out", str(out), "--reps", "500"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "comparison.json").read_text())
    assert result["labels"] == ["interleaved", "fused"]
    rows = result["rows"]
    # the headline target first, only the dataset x backbone that both sides ran
    assert [(r["dataset"], r["backbone"], r["target_return"]) for r in rows] == [
        ("hopper-medium", "mingru", 3600.0),
        ("hopper-medium", "mingru", 1800.0),
    ]
    headline, second = rows
    assert headline["a"]["seeds"] == {"0": 60.0, "1": 61.0, "2": 62.0}
    assert headline["b"]["seeds"] == {"0": 50.0, "1": 52.0, "2": 54.0}
    assert headline["difference"] == pytest.approx(61.0 - 52.0)
    assert headline["probability"] == pytest.approx(1.0)  # every interleaved run above every fused one
    assert headline["rank_test_p"] == pytest.approx(0.1)  # 2 / C(6, 3): the most three against three can say
    # at 1800: 40, 41, 42 against 41.5, 42.5, 43.5 -> pairs won: 42 > 41.5 only, 1 of 9
    assert second["probability"] == pytest.approx(1 / 9)
    assert second["difference"] == pytest.approx(41.0 - 42.5)
    assert "| hopper-medium | mingru | 3600 | 61.0 [60.0, 62.0] (3) | 52.0 [50.0, 54.0] (3) | +9.0 | 1.00 [" in printed
    assert (out / "comparison.md").read_text() in printed
    assert "Skipped from interleaved (1):" in printed and "seed9: unfinished" in printed


def test_compare_with_one_seed_gives_no_interval(tmp_path):
    pytest.importorskip("rliable")
    a, b = tmp_path / "a", tmp_path / "b"
    fake_run(a, "hopper-medium", "mingru", 0, 60.0)
    for seed in range(3):
        fake_run(b, "hopper-medium", "mingru", seed, 50.0 + seed)
    from decision_minrnn.experiments.report import compare

    result = compare(a, b, reps=300)
    # one run of A against three of B is no probability (issue 38): neither a number nor an interval
    assert "| 60.0 [n=1: none] (1) | 51.0 [50.0, 52.0] (3) | +9.0 | n=1: none | 0.500 |" in result["table"]
    assert result["rows"][0]["probability"] is None
    assert result["files"] == {}  # without --out nothing is written
    assert sorted(p.name for p in tmp_path.rglob("comparison*")) == []


@pytest.mark.parametrize("case", ["missing", "empty", "disjoint"])
def test_compare_refuses_what_it_cannot_compare_in_one_line(tmp_path, capsys, case):
    a, b = tmp_path / "a", tmp_path / "b"
    fake_run(a, "hopper-medium", "mingru", 0, 60.0)
    if case == "empty":
        b.mkdir()
    elif case == "disjoint":
        fake_run(b, "walker2d-medium", "mingru", 0, 60.0)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "out"), "--reps", "100"]) == 2
    err = capsys.readouterr().err.strip()
    message = {"missing": "does not exist", "empty": "no finished runs", "disjoint": "share no dataset x backbone"}
    assert len(err.splitlines()) == 1 and message[case] in err, err
    assert not (tmp_path / "out").exists()


def test_compare_pools_every_cell_of_a_target_over_the_seeds_all_cells_have(tmp_path):
    pytest.importorskip("rliable")
    a, b = tmp_path / "a", tmp_path / "b"
    for seed in range(3):
        for backbone, shift in [("mingru", 0.0), ("transformer", 20.0)]:
            fake_run(a, "hopper-medium", backbone, seed, 60.0 + shift + seed)
            fake_run(b, "hopper-medium", backbone, seed, 50.0 + shift + seed)
    fake_run(a, "hopper-medium", "mingru", 7, 0.0)  # a seed only one cell has: left out of the pooled row
    from decision_minrnn.experiments.report import compare

    result = compare(a, b, reps=300)
    (pooled,) = result["aggregate"]
    assert pooled["cells"] == 2 and pooled["a"]["n"] == 3 and pooled["b"]["n"] == 3
    assert pooled["a"]["mean"] == pytest.approx(71.0) and pooled["b"]["mean"] == pytest.approx(61.0)
    assert pooled["probability"] == pytest.approx(1.0)  # within each cell every A run beats every B run
    # pooled, A's 60-62 lie below B's 70-72, so the rank test, blind to the cells, sees overlapping samples:
    # it can only be more cautious than P's stratified interval (exact, scipy: 0.1797)
    assert pooled["rank_test_p"] == pytest.approx(0.1797, abs=1e-4)
    assert "| **all 2 cells** | | 3600 | 71.0 (3 each) | 61.0 (3 each) | +10.0 | 1.00 [1.00, 1.00] |" in result["table"]


@pytest.mark.parametrize("n, grid", [(1, (1, 1)), (3, (1, 3)), (4, (2, 3)), (9, (3, 3))])
def test_per_dataset_figures_put_three_panels_to_a_row_and_fit_their_title(n, grid):
    """Nine datasets are three rows of three, not one strip 40 inches wide; one panel alone is widened so the
    figure's title is not clipped; spare cells are hidden."""
    pytest.importorskip("matplotlib")
    from decision_minrnn.experiments.plots import panels, pyplot

    plt = pyplot()
    fig, axes = panels(plt, n, 4.0)
    try:
        assert len(axes) == n and all(ax.get_visible() for ax in axes)
        shown = [ax for ax in fig.axes if ax.get_visible()]
        rows = {round(ax.get_position().y0, 3) for ax in shown}
        assert (len(rows), max(sum(round(ax.get_position().y0, 3) == y for ax in shown) for y in rows)) == grid
        assert len(fig.axes) - len(shown) == grid[0] * grid[1] - n
        assert fig.get_size_inches()[0] >= 6.5
    finally:
        plt.close(fig)


def test_report_with_one_seed_prints_no_probability(tmp_path):
    pytest.importorskip("rliable")
    root = tmp_path / "runs"
    fake_run(root, "hopper-medium", "mingru", 0, 60.0)
    fake_run(root, "hopper-medium", "transformer", 0, 50.0)
    from decision_minrnn.experiments.report import report

    result = report(root, None, reps=200)
    assert "| mingru | transformer | n=1: none | 1 / 1 | hopper-medium |" in result["table"]
    assert "1.00 [1.00, 1.00]" not in result["table"]


def test_sweep_set_applies_to_every_run_after_the_grids_own(tiny_grid, tmp_path, capsys):
    """`sweep --set` (issue 38): one override for every run, winning over the grid's `set`."""
    grid = load_grid(tiny_grid, ["train.steps=4", "train.warmup_steps=1"])
    assert {r.config().train.steps for r in grid.runs} == {4}
    small = tmp_path / "small.yaml"
    small.write_text(tiny_grid.read_text().replace("- mingru\n- transformer\n", "- mingru\n"))
    args = ["sweep", "--grid", str(small), "--runs-root", str(tmp_path / "runs"), "--no-ray"]
    assert main([*args, "--set", "train.steps=4", "--set", "train.warmup_steps=1", "--set", "train.eval_every=2"]) == 0
    finals = sorted((tmp_path / "runs").rglob("final.json"))
    assert len(finals) == 4 and {json.loads(f.read_text())["step"] for f in finals} == {4}


def test_a_grid_names_packaged_configs_as_decision_minrnn_configs_lists_them(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("datasets: {hopper-medium: bench/hopper-medium}\nbackbones: [mingru]\n")
    (run,) = load_grid(grid).runs
    assert Path(run.config_path).name == "hopper-medium.yaml" and run.config().data.source == ["bench/hopper/medium-v0"]
    grid.write_text("datasets: {hopper-medium: bench/no-such-config}\nbackbones: [mingru]\n")
    with pytest.raises(ConfigError, match="is not a packaged config name"):
        load_grid(grid)


PROTOCOL = {"test_episodes": 100, "test_seed": 1000000, "selection_episodes": 10, "selection_seed": 0}


@pytest.mark.parametrize(
    "odd,message",
    [
        ({"eval": {"target_return": 1800.0, "normalized_mean": 50.0, "score_reference": "D4RL table"}}, "target"),
        ({"eval_protocol": None}, "scored on"),
        ({"step": 12}, "steps"),
        ({"amp": "bf16"}, "precision"),
        ({"dataset": "bench/hopper/medium-v1"}, "data"),
    ],
    ids=["target", "scored-on", "budget", "precision", "data"],
)
def test_report_refuses_a_cell_that_pools_runs_of_different_protocols(tmp_path, capsys, odd, message):
    """Issue 36, class 2: one seed of another target, budget, precision, data or scoring in a cell of three."""
    root = tmp_path / "runs"
    common = {"dataset": "bench/hopper/medium-v0", "amp": "none", "eval_protocol": PROTOCOL}
    for seed in range(3):
        fake_run(root, "hopper-medium", "mingru", seed, 40.0 + seed, **{**common, **(odd if seed == 2 else {})})
    args = ["report", str(root), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"hopper-medium / mingru mixes runs with different {message}" in err
    assert not (tmp_path / "out").exists()


def test_report_refuses_backbones_of_one_label_scored_on_different_data_and_compare_on_different_episodes(
    tmp_path, capsys
):
    root = tmp_path / "runs"
    for seed in range(2):
        fake_run(root, "hopper-medium", "mingru", seed, 40.0, dataset="bench/hopper/medium-v0")
        fake_run(root, "hopper-medium", "transformer", seed, 40.0, dataset="bench/hopper/medium-v1")
    assert main(["report", str(root), "--out", str(tmp_path / "out")]) == 2
    assert "hopper-medium's backbones were scored with different data" in capsys.readouterr().err
    a, b = tmp_path / "a", tmp_path / "b"
    for seed in range(2):
        fake_run(a, "hopper-medium", "mingru", seed, 40.0, eval_protocol=PROTOCOL)
        fake_run(b, "hopper-medium", "mingru", seed, 41.0)
    assert main(["compare", str(a), str(b), "--labels", "test", "train-evals"]) == 2
    assert "test has scored on 100 test episodes from seed 1000000" in capsys.readouterr().err
    assert main(["compare", str(a), str(a), "--labels", "A", "A"]) == 2
    assert "need different names" in capsys.readouterr().err


def test_published_numbers_stand_only_beside_runs_on_the_data_they_were_published_for(tmp_path):
    """Issue 38: the paper's D4RL numbers beside runs on D4RL's v2 files only, never beside bench or Minari data."""
    pytest.importorskip("rliable")
    for data, root in (
        ("hopper-medium-replay-v2", tmp_path / "d4rl"),
        ("bench/hopper/medium-replay-v0", tmp_path / "b"),
    ):
        for seed in range(2):
            fake_run(root, "hopper-medium-replay", "mingru", seed, 80.0 + seed, dataset=data)
    d4rl = report(tmp_path / "d4rl", None, reps=200)["table"]
    bench = report(tmp_path / "b", None, reps=200)["table"]
    assert "| 90.5 ± 0.9 |" in d4rl
    assert "90.5 ± 0.9" not in bench and bench.splitlines()[2].endswith("| - |")


def test_report_counts_only_run_directories(tmp_path):
    """Issue 36, class 2: a final.json copied somewhere (no config.yaml beside it) is not a run of the table."""
    pytest.importorskip("rliable")
    root = tmp_path / "runs"
    for seed in range(2):
        fake_run(root, "hopper-medium", "mingru", seed, 40.0 + seed)
    stray = root / "hopper-medium" / "mingru" / "copy"
    stray.mkdir()
    (stray / "final.json").write_text((root / "hopper-medium" / "mingru" / "seed0" / "final.json").read_text())
    result = report(root, None, reps=200)
    assert result["runs"] == 2
    assert any("a final.json without its config.yaml" in s.reason for s in result["skipped"])
