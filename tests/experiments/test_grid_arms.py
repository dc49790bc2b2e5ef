"""Grids of arms (a backbone trained two ways) and datasets with overrides of their own (views, per-arm budgets)."""

import pytest

from decision_minrnn.errors import ConfigError
from decision_minrnn.experiments.grid import load_grid


def write(tmp_path, text):
    (tmp_path / "data.yaml").write_text("data:\n  source: test/hopper/x-v0\n")
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


GRID = """
name: g
datasets:
  plain: data.yaml
  vel: {config: data.yaml, set: [data.observe=velocities], arm_set: {gru-episodes: [train.batch_size=4]}}
arms:
  gru-k20: {backbone: mingru}
  gru-episodes: {backbone: mingru, set: [data.sampler_mode=episode]}
seeds: [0, 1]
set: [train.steps=7, train.warmup_steps=1]
"""


def test_arms_name_the_run_directories_and_carry_their_overrides(tmp_path):
    grid = load_grid(write(tmp_path, GRID))
    assert len(grid.runs) == 2 * 2 * 2
    by_dir = {str(r.relative_dir): r.config() for r in grid.runs}
    episodes = by_dir["vel/gru-episodes/seed1"]
    assert (episodes.model.backbone, episodes.data.sampler_mode, episodes.train.batch_size) == ("mingru", "episode", 4)
    assert episodes.data.observe == "velocities" and episodes.train.steps == 7 and episodes.train.seed == 1
    assert episodes.name == "vel/gru-episodes/seed1" and episodes.data.label == "vel"
    window = by_dir["vel/gru-k20/seed0"]
    assert (window.data.sampler_mode, window.train.batch_size, window.data.observe) == ("window", 64, "velocities")
    assert by_dir["plain/gru-episodes/seed0"].train.batch_size == 64  # arm_set is the dataset's own
    assert by_dir["plain/gru-episodes/seed0"].data.observe == "full"


@pytest.mark.parametrize(
    "change,match",
    [
        (("arms:", "backbones: [mingru]\narms:"), "either 'backbones' or 'arms'"),
        (("{backbone: mingru}", "{model: mingru}"), "must be a mapping with 'backbone'"),
        (("arm_set: {gru-episodes:", "arm_set: {nope:"), "arm_set names arms not in the grid"),
        (("{config: data.yaml, set:", "{file: data.yaml, set:"), "must be a config file or"),
        (("gru-k20:", "gru/k20:"), "must be a plain directory name"),
    ],
)
def test_bad_arms_and_dataset_entries_are_one_line(tmp_path, change, match):
    with pytest.raises(ConfigError, match=match):
        load_grid(write(tmp_path, GRID.replace(*change)))
