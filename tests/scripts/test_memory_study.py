"""scripts/memory_study.py report: the study's tables from the runs' small files, arms kept apart, the K=20
minGRU arm's window-mode score as its own row, no interval from one seed, and a refused stale side file."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import fake_run

from decision_minrnn.errors import DataError, UsageError

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "memory_study.py"
ARMS = {"transformer-k20": "transformer", "mingru-k20": "mingru", "mingru-episodes": "mingru"}


def study(root, seeds=(0, 1, 2), tasks=("hopper-medium", "walker2d-medium")):
    protocol = {"test_episodes": 100, "test_seed": 1000000, "selection_episodes": 10, "selection_seed": 0}
    for task in tasks:
        for arm, backbone in ARMS.items():
            for seed in seeds:
                score = {"transformer-k20": 20.0, "mingru-k20": 25.0, "mingru-episodes": 40.0}[arm] + seed
                wall = 100.0 if arm == "transformer-k20" else 150.0
                extra = {"timesteps": 6_250_000, "wall_seconds": wall, "eval_protocol": protocol}
                run = fake_run(root, f"{task}-velocities", arm, seed, score, **extra)
                final = json.loads((run / "final.json").read_text())
                (run / "final.json").write_text(json.dumps({**final, "backbone": backbone}))
                if arm == "mingru-k20":
                    window = {"step": 6, "seed": 1000000, "normalized_mean": score - 10.0, "normalized": []}
                    (run / "window_score.json").write_text(json.dumps(window))
    return root


def run_report(runs, out=None):
    # 500 resamples: the intervals tested here are far from their bounds; the default's 10k cost a minute a call
    args = [sys.executable, str(SCRIPT), "report", str(runs), "--reps", "500"]
    args += [] if out is None else ["--out", str(out)]
    return subprocess.run(args, capture_output=True, text=True)


def load_module():
    """The script as a module, in this process (a fresh interpreter costs seconds a call)."""
    spec = importlib.util.spec_from_file_location("memory_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_report_keeps_arms_apart_and_compares_each_with_transformer_k20(tmp_path):
    done = run_report(study(tmp_path / "runs"), tmp_path / "out")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    rows = {(r["task"], r["arm"]): r for r in result["rows"]}
    assert {arm for _, arm in rows} == {"transformer-k20", "mingru-k20", "mingru-k20-window", "mingru-episodes"}
    episodes = rows[("hopper-medium", "mingru-episodes")]
    assert episodes["mean"] == pytest.approx(41.0) and episodes["p_vs_baseline"] == 1.0
    assert episodes["wall_vs_baseline"] == pytest.approx(1.5) and episodes["timesteps"] == 6_250_000
    assert rows[("hopper-medium", "mingru-k20-window")]["mean"] == pytest.approx(16.0)
    assert rows[("hopper-medium", "mingru-k20-window")]["p_vs_baseline"] < 0.5
    pooled = {r["arm"]: r for r in result["pooled"]}
    assert (
        pooled["mingru-episodes"]["tasks"] == ["hopper-medium", "walker2d-medium"]
        and pooled["mingru-episodes"]["n"] == 3
    )
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"report.json", "report.md", "memory.png"}
    assert "| hopper-medium | velocities | mingru-episodes | 3 | 41.0 [" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.slow
def test_one_seed_gives_no_interval_and_no_probability(tmp_path):
    result = json.loads(run_report(study(tmp_path / "runs", seeds=(0,), tasks=("hopper-medium",))).stdout)
    for row in result["rows"]:
        assert row["mean_ci"] is None and row["iqm_ci"] is None and "p_vs_baseline" not in row
    assert result["pooled"] == []


@pytest.mark.slow
def test_a_window_score_of_another_checkpoint_is_refused_in_one_line(tmp_path):
    runs = study(tmp_path / "runs", seeds=(0, 1), tasks=("hopper-medium",))
    stale = runs / "hopper-medium-velocities" / "mingru-k20" / "seed1" / "window_score.json"
    stale.write_text(json.dumps({**json.loads(stale.read_text()), "step": 3}))
    done = run_report(runs)
    assert done.returncode == 2 and "scored another checkpoint" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert run_report(tmp_path / "nowhere").returncode == 2


@pytest.mark.slow
def test_the_hypothesis_is_read_per_view_and_the_grid_says_what_is_missing(tmp_path):
    """mingru-episodes beats transformer-k20 on every seed of both tasks at 1.5x its wall time: the hypothesis holds
    (the wall limit is inclusive) on three seeds, and the grid file, which plans four, says it is not complete."""
    config = tmp_path / "task.yaml"
    config.write_text("data: {source: mujoco/hopper/medium-v0}\n")
    grid = tmp_path / "grid.yaml"
    datasets = {f"{t}-velocities": {"config": str(config)} for t in ("hopper-medium", "walker2d-medium")}
    arms = {arm: {"backbone": backbone} for arm, backbone in ARMS.items()}
    grid.write_text(json.dumps({"name": "memory", "datasets": datasets, "arms": arms, "seeds": [0, 1, 2, 3]}))
    runs = study(tmp_path / "runs")
    args = [sys.executable, str(SCRIPT), "report", str(runs), "--grid", str(grid), "--out", str(tmp_path / "out")]
    args += ["--reps", "500"]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["progress"] == {"finished": 18, "planned": 24, "cells_not_started": 0}
    (verdict,) = result["hypothesis"]  # minlstm-episodes has no runs here: no verdict
    assert verdict["arm"] == "mingru-episodes" and verdict["view"] == "velocities"
    assert verdict["holds"] and verdict["p_above_half"] and verdict["wall_within"] and not verdict["complete"]
    assert all(v["n"] == 3 and v["p_ci"][0] > 0.5 for v in verdict["tasks"].values())
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| velocities | mingru-episodes |" in text and "| yes | yes | yes | no |" in text
    assert "Finished: 18 of the grid's 24 runs." in text

    for seed in (0, 1, 2):  # the wall ratio is the median over seeds
        slow = runs / "walker2d-medium-velocities" / "mingru-episodes" / f"seed{seed}" / "final.json"
        slow.write_text(json.dumps({**json.loads(slow.read_text()), "wall_seconds": 151.0}))
    module = load_module()
    (verdict,) = module.report(runs, None, reps=500)["hypothesis"]  # in this process: an interpreter costs seconds
    assert verdict["p_above_half"] and not verdict["wall_within"] and not verdict["holds"]
    assert "complete" not in verdict  # no grid file: no plan to compare with
    with pytest.raises(UsageError, match="--reps must be >= 1"):
        module.report(runs, None, reps=0)


def test_stamp_names_this_machine_once_and_refuses_a_machine_without_a_cpu(tmp_path):
    runs = study(tmp_path / "runs", seeds=(0,), tasks=("hopper-medium",))
    module = load_module()
    first = module.stamp(runs, None)
    assert len(first["stamped"]) == len(ARMS)
    machine = json.loads((runs / "hopper-medium-velocities" / "mingru-k20" / "seed0" / "machine.json").read_text())
    assert machine["cpu"] and machine["cpu_count"] >= 1 and isinstance(machine["cpu_native_bf16"], bool)
    assert module.stamp(runs, {"cpu": "another"})["stamped"] == []  # a run's machine is never rewritten
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "stamp", str(runs), "--machine", '{"cores": 2}'], capture_output=True, text=True
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and '"cpu"' in done.stderr


def test_the_wall_ratio_pairs_a_seed_only_on_one_machine(tmp_path):
    """Seed 2's whole-episode run trained on a machine three times slower than its baseline's: left out of the
    ratio (two seeds, not three), while its wall seconds still count in the mean, which says it mixes machines."""
    runs = study(tmp_path / "runs", tasks=("hopper-medium",))
    odd = runs / "hopper-medium-velocities" / "mingru-episodes" / "seed2"
    (odd / "machine.json").write_text(json.dumps({"cpu": "slow", "cpu_count": 2, "cpu_native_bf16": False}))
    (odd / "final.json").write_text(json.dumps({**json.loads((odd / "final.json").read_text()), "wall_seconds": 450.0}))
    module = load_module()
    module.stamp(runs, {"cpu": "fast", "cpu_count": 2, "cpu_native_bf16": False})
    rows = {r["arm"]: r for r in module.report(runs, None, reps=500)["rows"]}
    episodes = rows["mingru-episodes"]
    assert episodes["wall_vs_baseline"] == pytest.approx(1.5) and episodes["wall_pairs"] == 2
    assert episodes["machines"] == 2 and episodes["wall_seconds"] == pytest.approx(250.0)
    assert rows["mingru-k20"]["wall_pairs"] == 3 and rows["mingru-k20"]["machines"] == 1
    assert "250 on 2 machines (1.50x, 2 seeds)" in module.markdown({"rows": [episodes], "pooled": [], "hypothesis": []})
    (odd / "machine.json").write_text('{"cpu": "slow", ')  # a truncated record: one line naming it
    with pytest.raises(DataError, match="machine.json is unreadable.*memory_study.py stamp"):
        module.report(runs, None, reps=500)
    (odd / "machine.json").write_text('{"cores": 2}')
    with pytest.raises(UsageError, match="machine.json names no cpu"):
        module.report(runs, None, reps=500)


def test_every_committed_memory_run_names_its_machine():
    """The report's wall ratios pair runs by machine: a run committed without machine.json (stamp forgotten)
    would pair with anything unrecorded."""
    runs = Path(__file__).resolve().parents[2] / "docs" / "memory" / "runs"
    finals = sorted(runs.glob("*/*/seed*/final.json"))
    assert finals, "no committed memory runs found"
    missing = [str(f.parent.relative_to(runs)) for f in finals if not (f.parent / "machine.json").is_file()]
    assert not missing, f"run scripts/memory_study.py stamp on the machine that trained them: {missing}"
