"""Every run committed under docs/<grid>/runs is what its grid file resolves to today.

A changed default (train.amp became auto) or an edited grid would otherwise change a grid's protocol in the
middle: the runs that resume or are added later would train under other settings than the committed ones,
and the table would mix two protocols without a word. Keys added to Config after a run was committed are
not in its config.yaml and are not compared.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from decision_minrnn.config import config_to_dict
from decision_minrnn.experiments.grid import load_grid
from decision_minrnn.loggers import flatten

ROOT = Path(__file__).resolve().parents[2]
# sweep sets train.threads from --cpus-per-run; it does not change what a run computes.
SET_BY_SWEEP = {"train.threads"}


def committed_grids() -> list[Path]:
    return [
        g for g in sorted((ROOT / "configs" / "grids").glob("*.yaml")) if (ROOT / "docs" / g.stem / "runs").is_dir()
    ]


def test_the_committed_grids_are_found():
    # The grids whose runs docs/results.md reports; if this list shrinks, the test below checks nothing for them.
    assert {g.stem for g in committed_grids()} >= {"bench-cpu-converged", "bench-cpu-nine", "bench-cpu-bf16"}


@pytest.mark.parametrize("grid_file", committed_grids(), ids=lambda p: p.stem)
def test_committed_runs_match_their_grid_file(grid_file):
    grid = load_grid(grid_file)
    runs_dir = ROOT / "docs" / grid.name / "runs"
    checked = 0
    for spec in grid.runs:
        saved_file = runs_dir / spec.relative_dir / "config.yaml"
        if not saved_file.is_file():
            continue
        saved, now = flatten(yaml.safe_load(saved_file.read_text())), flatten(config_to_dict(spec.config()))
        differ = {
            k: (saved[k], now.get(k, "<gone>")) for k in saved if k not in SET_BY_SWEEP and saved[k] != now.get(k)
        }
        assert not differ, f"{spec.relative_dir}: committed -> grid file today: {differ}"
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("grid_file", sorted((ROOT / "configs" / "grids").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_grid_file_pins_its_precision(grid_file):
    # A grid is a protocol: train.amp=auto would make it float32 on one machine and bf16 on another.
    overrides = [str(x) for x in yaml.safe_load(grid_file.read_text()).get("set") or []]
    assert any(o.startswith("train.amp=") and o != "train.amp=auto" for o in overrides), grid_file.name


@pytest.mark.parametrize("grid_file", sorted((ROOT / "configs" / "grids").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_grid_file_resolves_to_valid_run_configs(grid_file):
    # A grid that only a GPU session will run must not first fail there on a typo (bench-gpu-full-hopper).
    grid = load_grid(grid_file)
    assert grid.runs
    for spec in grid.runs:
        spec.config()  # merges and validates; raises on an unknown key or a bad value
