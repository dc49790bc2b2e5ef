"""A resume refuses every setting that would change what was trained (issue 36, class 1): config.yaml and
final.json must never claim a value for a whole run that held only for its end. What a resume may change
(config.RESUME_MAY_CHANGE) goes through."""

import json

import pytest
import yaml
from helpers import cli_sets, snapshot, tiny_config

from decision_minrnn.cli import main


@pytest.fixture
def stopped_run(tmp_path, tiny_minari):
    """A run stopped at step 10 of 20 with a checkpoint (constant learning rate after its warmup)."""
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 20)
    run = tmp_path / "run"
    argv = ["train", "--config", str(path), "--run-dir", str(run), "--no-progress", "--stop-at", "10"]
    assert main(argv + cli_sets(overrides)) == 0
    return run


@pytest.mark.parametrize(
    "setting",
    [
        "model.dropout_impl=fast",
        "train.amp=OTHER",  # the precision the run did not train in
        "model.embed_init=gpt2",
        "train.lr=0.5",
        "train.weight_decay=0.1",
        "train.batch_size=4",
        "train.grad_clip=1.0",
        "data.context_len=4",
        "data.observe=velocities",
        "train.lr_schedule=cosine",
        "model.dropout=0.3",
        "train.seed=7",
    ],
)
def test_a_resume_that_would_change_what_was_trained_is_refused_and_touches_nothing(stopped_run, capsys, setting):
    if setting == "train.amp=OTHER":
        saved = yaml.safe_load((stopped_run / "config.yaml").read_text())["train"]["amp"]
        setting = f"train.amp={'none' if saved == 'bf16' else 'bf16'}"
    before = snapshot(stopped_run)
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(stopped_run), "--no-progress", "--set", setting]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume cannot change" in err and setting.split("=")[0] in err, err
    assert "--run-dir NEW" in err
    assert snapshot(stopped_run) == before  # no checkpoint rotated away, no config.yaml rewritten


def test_what_a_resume_may_change_goes_through(stopped_run, capsys):
    sets = ["train.steps=30", "eval.episodes=0", "train.log_every=2", "train.checkpoint_every=5", "train.threads=1"]
    assert main(["train", "--resume", "--run-dir", str(stopped_run), "--no-progress", *cli_sets(sets)]) == 0
    assert json.loads((stopped_run / "final.json").read_text())["step"] == 30


def test_more_steps_under_a_decaying_schedule_is_refused(tmp_path, tiny_minari, capsys):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 20, ["train.lr_schedule=cosine"])
    run = tmp_path / "run"
    argv = ["train", "--config", str(path), "--run-dir", str(run), "--no-progress", "--stop-at", "10"]
    assert main(argv + cli_sets(overrides)) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress", "--set", "train.steps=40"]) == 2
    assert "whose decay was planned over the first" in capsys.readouterr().err


def test_a_seed_group_resumed_with_other_seeds_is_refused(tmp_path, tiny_minari, capsys):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 20, ["train.seeds=[0,1]"])
    run = tmp_path / "group"
    argv = ["train", "--config", str(path), "--run-dir", str(run), "--no-progress", "--stop-at", "10"]
    assert main(argv + cli_sets(overrides)) == 0
    capsys.readouterr()
    resume = ["train", "--resume", "--run-dir", str(run), "--no-progress"]
    assert main(resume + ["--set", "train.seeds=[0,1,2]"]) == 2
    err = capsys.readouterr().err
    assert "continues the seeds [0, 1]" in err and not (run / "seed2").exists()
    assert main(resume + ["--set", "train.seeds=[1,0]"]) == 0  # the same seeds, in any order


def test_a_resume_builds_its_config_from_the_checkpoint_alone(stopped_run, capsys):
    """train --resume --run-dir builds the run's config once, from its checkpoint (and --set): a damaged
    config.yaml is neither read nor in the way, and is written again from the checkpoint's config."""
    saved = yaml.safe_load((stopped_run / "config.yaml").read_text())
    (stopped_run / "config.yaml").write_text("model: [this is not a config\n")
    assert main(["train", "--resume", "--run-dir", str(stopped_run), "--no-progress"]) == 0
    assert yaml.safe_load((stopped_run / "config.yaml").read_text()) == saved
    assert json.loads((stopped_run / "final.json").read_text())["step"] == 20


def test_resuming_a_directory_with_nothing_in_it_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for run in (tmp_path / "empty", tmp_path / "missing"):
        assert main(["train", "--resume", "--run-dir", str(run), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            f"error: nothing to resume in {run}: no checkpoint and no config.yaml; start the run with --config FILE"
        ), err
    assert list((tmp_path / "empty").iterdir()) == [] and not (tmp_path / "missing").exists()


def test_what_a_resume_sets_meets_a_new_runs_rules(stopped_run, capsys):
    """An override on resume is held to the rules a new run's config is (config._check_budget): an evaluation
    cadence beyond the run's steps would silently never evaluate."""
    before = snapshot(stopped_run)
    assert (
        main(["train", "--resume", "--run-dir", str(stopped_run), "--no-progress", "--set", "train.eval_every=1000"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.eval_every=1000 is beyond train.steps=20" in err, err
    assert snapshot(stopped_run) == before
