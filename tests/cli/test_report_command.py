"""`decision-minrnn report` and `compare`: bad options are one line, a non-finite score is a skipped run (not
a NaN row), and --out replaces only what they wrote before."""

import json
import math

import pytest
from helpers import (
    fake_run,
    refused,
    snapshot,
)

from decision_minrnn.cli import main


@pytest.fixture
def two_sweeps(tmp_path):
    for side, scores in (("a", [50.0, 52.0]), ("b", [40.0, 45.0])):
        for seed, score in enumerate(scores):
            fake_run(tmp_path / side, "hopper-medium", "mingru", seed, score)
    return tmp_path / "a", tmp_path / "b"


@pytest.mark.parametrize("reps", ["0", "-5"])
@pytest.mark.parametrize("command", ["report", "compare"])
def test_bootstrap_resamples_below_one_are_refused(two_sweeps, tmp_path, capsys, command, reps):
    pytest.importorskip("rliable")
    before = snapshot(tmp_path, dirs=True)
    dirs = [str(two_sweeps[0])] if command == "report" else [str(d) for d in two_sweeps]
    refused(capsys, [command, *dirs, "--reps", reps, "--out", str(tmp_path / "out")], "--reps must be >= 1")
    assert snapshot(tmp_path, dirs=True) == before


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf])
def test_a_non_finite_score_is_a_skipped_run_not_a_nan_row(tmp_path, capsys, score):
    pytest.importorskip("rliable")
    for seed, value in enumerate([50.0, 52.0, score]):
        fake_run(tmp_path / "runs", "hopper-medium", "mingru", seed, value)
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--reps", "200"]) == 0
    out = capsys.readouterr().out
    assert "nan [" not in out and "inf [" not in out and "not a finite number" in out  # listed as skipped
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    (cell,) = stats["cells"]
    assert cell["n"] == 2 and cell["mean"] == pytest.approx(51.0)
    (skip,) = stats["skipped"]
    assert skip["run_dir"].endswith("seed2") and "not a finite number" in skip["reason"]


@pytest.mark.parametrize("command", ["report", "compare"])
@pytest.mark.parametrize("users_file", ["table.md", "scores.png", "comparison.md", "stats.json"])
def test_report_and_compare_never_replace_a_users_file_in_out(two_sweeps, tmp_path, capsys, command, users_file):
    pytest.importorskip("rliable")
    out = tmp_path / "out"
    out.mkdir()
    (out / users_file).write_text("the user's")
    dirs = [str(two_sweeps[0])] if command == "report" else [str(d) for d in two_sweeps]
    argv = [command, *dirs, "--out", str(out), "--reps", "100"]
    ours = {"report": ("table.md", "scores.png", "stats.json"), "compare": ("comparison.md",)}[command]
    if users_file not in ours:
        assert main(argv) == 0 and (out / users_file).read_text() == "the user's"  # not a name it writes
        return
    before = snapshot(tmp_path, dirs=True)
    refused(capsys, argv, f"holds {users_file}, which an earlier {command} did not write", "nothing was replaced")
    assert snapshot(tmp_path, dirs=True) == before


@pytest.mark.parametrize("command", ["report", "compare"])
def test_report_and_compare_rewrite_their_own_earlier_output(two_sweeps, tmp_path, capsys, command):
    pytest.importorskip("rliable")
    dirs = [str(two_sweeps[0])] if command == "report" else [str(d) for d in two_sweeps]
    argv = [command, *dirs, "--out", str(tmp_path / "out"), "--reps", "100"]
    assert main(argv) == 0
    first = snapshot(tmp_path / "out", dirs=True)
    assert main(argv) == 0 and snapshot(tmp_path / "out", dirs=True) == first  # the same runs give the same files
