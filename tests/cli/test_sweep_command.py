"""`decision-minrnn sweep` refuses a bad grid, option or runs root before any run starts."""

import os

import pytest
from helpers import (
    cli_sets,
    one_line_error,
    refused,
    snapshot,
    tiny_config,
)

from decision_minrnn.cli import main


def test_a_runs_root_that_is_a_file_and_a_read_only_run_dir(tmp_path, tiny_minari, capsys):
    grid = tmp_path / "g.yaml"
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 4)
    grid.write_text(f"datasets: {{hopper-medium: {path}}}\nbackbones: [mingru]\nset: {overrides}\n")
    (tmp_path / "rootfile").write_text("x")
    assert main(["sweep", "--grid", str(grid), "--runs-root", str(tmp_path / "rootfile"), "--no-ray"]) == 2
    one_line_error(capsys, "rootfile")
    if os.geteuid() == 0:
        return  # root writes through read-only permissions; the case needs an unprivileged user
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    assert main(["train", "--config", str(path), "--run-dir", str(locked / "r"), *cli_sets(overrides)]) == 2
    one_line_error(capsys, "Permission denied")


GRID = "datasets: {hopper-medium: x.yaml}\nbackbones: [mingru]\n"


BAD_GRIDS = {
    "a dataset label given twice": (
        "datasets:\n  hopper-medium: a.yaml\n  hopper-medium: b.yaml\nbackbones: [mingru]\n",
        "duplicate key hopper-medium",
    ),
    "a backbone given twice": (GRID.replace("[mingru]", "[mingru, minlstm, mingru]"), "'backbones' lists mingru more"),
    "a seed given twice": (GRID + "seeds: [0, 1, 0]\n", "'seeds' lists 0 more than once"),
    "a fractional seed": (GRID + "seeds: [1.7]\n", "'seeds' must be integers >= 0"),
    "a boolean seed": (GRID + "seeds: [true]\n", "'seeds' must be integers >= 0"),
    "a negative seed": (GRID + "seeds: [-2]\n", "'seeds' must be integers >= 0"),
    "a backbone that is not a name": (GRID.replace("[mingru]", "[1]"), "'backbones' must be names"),
    "a duplicate key in a nested mapping": (GRID + "backbone_set:\n  mingru: [a=1]\n  mingru: [a=2]\n", "duplicate"),
}


@pytest.mark.parametrize("case", BAD_GRIDS, ids=list(BAD_GRIDS))
def test_bad_grids_are_refused_before_any_run(tmp_path, capsys, case):
    content, message = BAD_GRIDS[case]
    grid = tmp_path / "g.yaml"
    grid.write_text(content)
    before = snapshot(tmp_path, dirs=True)
    refused(capsys, ["sweep", "--grid", str(grid), "--runs-root", str(tmp_path / "runs"), "--no-ray"], message)
    assert snapshot(tmp_path, dirs=True) == before


@pytest.mark.parametrize("value", ["0", "-3"])
def test_max_parallel_below_one_is_refused(tmp_path, capsys, value):
    grid = tmp_path / "g.yaml"
    grid.write_text(GRID)
    refused(capsys, ["sweep", "--grid", str(grid), "--runs-root", str(tmp_path / "runs"), "--max-parallel", value],
            f"--max-parallel must be >= 1, got {value}")  # fmt: skip
    assert not (tmp_path / "runs").exists()
