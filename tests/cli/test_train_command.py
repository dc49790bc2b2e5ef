"""`decision-minrnn train` refuses bad input with one line and exit code 2, never touching what was there:
--force replaces only run directories and only once the new run has started; one process per run directory;
data checked against its environment before training; a non-finite loss, a signal or a full disk stops with
one line and loses nothing; a resume refuses what would change what was trained. Every case checks the exit
code, a single line without a traceback, and that the files that existed are unchanged."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    cli_sets,
    cli_trained_run,
    flip_bytes,
    one_line_error,
    refused,
    snapshot,
    tiny_config,
    tiny_train_argv,
)

from decision_minrnn.cli import main
from decision_minrnn.rundir import foreign_entry


def test_force_refuses_a_directory_that_is_not_a_run(tmp_path, tiny_minari, capsys):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10)
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "thesis.txt").write_text("x")
    before = snapshot(precious, exclude=(".lock",))
    assert main(["train", "--config", str(path), "--run-dir", str(precious), "--force", *cli_sets(overrides)]) == 2
    one_line_error(capsys, "--force refused", "not a decision-minrnn run directory", "nothing was deleted")
    assert snapshot(precious, exclude=(".lock",)) == before and (precious / "sub").is_dir()


def test_force_refuses_a_run_with_a_users_file_in_it_and_the_current_directory(
    tmp_path, tiny_minari, capsys, monkeypatch
):
    path, sets, run = cli_trained_run(tmp_path, tiny_minari[0])
    for name in ("window_score.json", "target_rule.json"):  # what scripts derive from a run is the run's
        (Path(run) / name).write_text("{}")
    assert foreign_entry(Path(run)) is None
    (Path(run) / "notes.txt").write_text("mine")
    before = snapshot(Path(run), exclude=(".lock",))
    assert main(["train", "--config", str(path), "--run-dir", run, "--force", "--no-progress", *sets]) == 2
    one_line_error(capsys, "--force refused")
    (Path(run) / "notes.txt").unlink()
    monkeypatch.chdir(run)
    assert main(["train", "--config", str(path), "--run-dir", ".", "--force", "--no-progress", *sets]) == 2
    one_line_error(capsys, "contains the current directory")
    assert snapshot(Path(run), exclude=(".lock",)) == {k: v for k, v in before.items() if k != "notes.txt"}


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.lr=nan", "train.lr=nan is not a finite number"),
        ("train.weight_decay=-5", "train.weight_decay=-5.0 must be >= 0"),
        ("train.threads=-1", "train.threads=-1 must be >= 0"),
        ("train.grad_clip=0", "train.grad_clip=0.0 must be > 0"),
        ("train.grad_clip=-1", "must be > 0"),
        ("data.rtg_scale=nan", "data.rtg_scale=nan is not a finite number"),
        ("eval.target_returns=[inf]", "target returns must be finite"),
        ("train.seed=-1", "train.seed=-1 must be >= 0"),
        ("data.env_id=Walker2d-v5", "is hopper data but data.env_id=Walker2d-v5 is walker2d"),
    ],
)
def test_force_with_a_bad_new_run_leaves_the_old_one_byte_identical(tmp_path, tiny_minari, capsys, override, message):
    path, sets, run = cli_trained_run(tmp_path, tiny_minari[0])
    before = snapshot(Path(run), exclude=(".lock",))
    capsys.readouterr()
    assert (
        main(["train", "--config", str(path), "--run-dir", run, "--force", "--no-progress", *sets, "--set", override])
        == 2
    )
    one_line_error(capsys, message)
    assert snapshot(Path(run), exclude=(".lock",)) == before


def test_force_whose_new_run_diverges_puts_the_old_run_back(tmp_path, tiny_minari, capsys):
    path, sets, run = cli_trained_run(tmp_path, tiny_minari[0])
    before = snapshot(Path(run), exclude=(".lock",))
    capsys.readouterr()
    # An infinite learning rate is finite-checked away, so diverge through a huge one: the first update
    # overflows the weights and the next loss is not finite.
    diverging = cli_sets(["train.lr=1e20", "train.warmup_steps=0", "train.grad_clip=1e10"])
    assert main(["train", "--config", str(path), "--run-dir", run, "--force", "--no-progress", *sets, *diverging]) == 2
    one_line_error(capsys, "loss became", "at step", "no checkpoint was written")
    assert snapshot(Path(run), exclude=(".lock",)) == before
    assert not [p for p in Path(run).parent.iterdir() if ".replaced-" in p.name]


def test_non_finite_loss_stops_at_its_step_before_any_checkpoint(tmp_path, tiny_minari, capsys):
    path, overrides = tiny_config(
        tmp_path, tiny_minari[0], 10, ["train.lr=1e20", "train.warmup_steps=0", "train.grad_clip=1e10"]
    )
    run = tmp_path / "r"
    assert main(["train", "--config", str(path), "--run-dir", str(run), "--no-progress", *cli_sets(overrides)]) == 2
    err = one_line_error(capsys, "loss became")
    assert "at step 2" in err or "at step 3" in err
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())


def test_resume_with_an_incompatible_override_changes_nothing(tmp_path, tiny_minari, capsys):
    path, sets, run = cli_trained_run(tmp_path, tiny_minari[0])
    before = snapshot(Path(run), exclude=(".lock",))
    capsys.readouterr()
    changed = cli_sets(["model.backbone=transformer", "train.steps=20"])
    assert main(["train", "--resume", "--run-dir", run, "--no-progress", *changed]) == 2
    one_line_error(capsys, "--resume cannot change model.backbone (mingru -> transformer)")
    assert main(["train", "--resume", "--run-dir", run, "--config", str(path), "--no-progress"]) == 2
    one_line_error(capsys, "--config would be ignored")
    assert snapshot(Path(run), exclude=(".lock",)) == before


def _train_in_a_fresh_interpreter(path, run, overrides) -> list[str]:
    """`decision-minrnn train` as a user runs it: its own process."""
    argv = ["train", "--config", str(path), "--no-progress", "--run-dir", str(run), *cli_sets(overrides)]
    return [sys.executable, "-m", "decision_minrnn.cli", *argv]


def _start_training(tmp_path, dataset_id, run, steps=100000):
    path, overrides = tiny_config(tmp_path, dataset_id, steps, ["train.threads=1"])
    cmd = _train_in_a_fresh_interpreter(path, run, overrides)
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stderr=subprocess.PIPE, text=True)
    ckpts = run / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpts.is_dir() and any(p.name.startswith("step-") for p in ckpts.iterdir())):
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()
    return proc, path, overrides


@pytest.mark.slow
def test_a_second_process_is_refused_while_a_run_is_live(tmp_path, tiny_minari, capsys):
    run = tmp_path / "live"
    proc, path, overrides = _start_training(tmp_path, tiny_minari[0], run)
    try:
        for extra in (["--resume"], ["--force", "--config", str(path)], ["--config", str(path)]):
            assert main(["train", "--run-dir", str(run), "--no-progress", *extra, *cli_sets(overrides)]) == 2
            one_line_error(capsys, f"is in use by pid {proc.pid}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The lock died with its holder: the run resumes.
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress", "--set", "train.steps=10"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_writes_a_checkpoint_and_exits_with_one_line(tmp_path, tiny_minari, sig, code):
    run = tmp_path / "sig"
    proc, _, _ = _start_training(tmp_path, tiny_minari[0], run)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"interrupted: {signal.Signals(sig).name}: stopped at step"), err
    step = int(lines[0].split("stopped at step ")[1].split()[0])
    assert (run / "checkpoints" / f"step-{step:08d}").is_dir()  # the current step, not the last periodic one
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress", "--set", f"train.steps={step + 5}"]) == 0


@pytest.mark.parametrize(
    "override,setting",
    [
        ("train.batch_size=10000000", "train.batch_size"),
        ("data.context_len=100000", "longer than any episode can be"),
        ("model.embed_dim=100000", "model.embed_dim"),
    ],
)
def test_a_setting_that_cannot_fit_in_memory_is_refused_before_allocating(
    tmp_path, tiny_minari, capsys, override, setting
):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10)
    start = time.perf_counter()
    assert (
        main(
            ["train", "--config", str(path), "--run-dir", str(tmp_path / "r"), *cli_sets(overrides), "--set", override]
        )
        == 2
    )
    one_line_error(capsys, setting)
    assert time.perf_counter() - start < 30 and not (tmp_path / "r").exists()


def test_too_many_evaluation_episodes_are_refused(tmp_path, tiny_minari, capsys):
    _, _, run = cli_trained_run(tmp_path, tiny_minari[0])
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", run, "--episodes", "10000000"]) == 2
    one_line_error(capsys, "lower --episodes")


def test_the_default_recipe_fits():
    from decision_minrnn.config import load_config
    from decision_minrnn.memory import training_bytes

    need = training_bytes(load_config(None, []), 11, 3, tokens_per_step=3, context_len=20)
    assert 50 * 2**20 < need < 500 * 2**20


def test_a_damaged_checkpoint_names_the_newest_intact_one_and_resume_goes_on_from_it(tmp_path, tiny_minari, capsys):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 20)
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--run-dir", str(run), "--no-progress", *cli_sets(overrides)]) == 0
    first, newest = sorted((run / "checkpoints").glob("step-*"))
    flip_bytes(newest / "train.safetensors")  # the optimizer moments and RNG state a resume would load
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress", "--set", "train.steps=30"]) == 2
    one_line_error(capsys, f"the newest intact checkpoint is {first}")
    shutil.move(str(newest), str(tmp_path / "damaged"))  # as the message says: move it aside, resume goes on
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress", "--set", "train.steps=30"]) == 0


def test_malformed_yaml_names_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  source: [a, b\nmodel:\n  backbone: mingru\n")
    assert main(["train", "--config", str(bad)]) == 2
    one_line_error(capsys, "is not valid YAML at line 3, column")


@pytest.mark.slow
def test_two_trainings_started_together_into_one_new_directory(tmp_path, tiny_minari):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 40, ["train.threads=1"])
    run = tmp_path / "shared"
    cmd = _train_in_a_fresh_interpreter(path, run, overrides)
    procs = [
        subprocess.Popen(cmd + ["--set", f"train.seed={seed}"], stderr=subprocess.PIPE, text=True) for seed in (1, 2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    (loser_err,) = [err for code, err in results if code == 2]
    lines = loser_err.strip().splitlines()
    assert len(lines) == 1 and ("is in use by pid" in lines[0] or "already exists" in lines[0]), loser_err
    (winner,) = [seed for (code, _), seed in zip(results, (1, 2)) if code == 0]
    # The winner's run is whole and consistent: its config, its checkpoint, nothing of the loser's.
    import yaml

    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] == winner
    state = json.loads(sorted((run / "checkpoints").glob("step-*"))[-1].joinpath("state.json").read_text())
    assert state["config"]["train"]["seed"] == winner and state["step"] == 40


def test_a_run_dir_under_proc_is_one_line(tmp_path, tiny_minari, capsys):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 4)
    assert main(["train", "--config", str(path), "--run-dir", "/proc/decision-minrnn-run", *cli_sets(overrides)]) == 2
    one_line_error(capsys, "/proc/decision-minrnn-run")


def test_resume_after_a_kill_during_the_final_evaluation_keeps_the_final_loss(tmp_path, tiny_minari):
    from decision_minrnn.config import load_config
    from decision_minrnn.train import train

    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10)
    first = train(load_config(path, overrides), tmp_path / "r", progress=False)
    (tmp_path / "r" / "final.json").unlink()  # as if killed after the last checkpoint, during the evaluation
    again = train(load_config(path, overrides), tmp_path / "r", resume=True, progress=False)
    assert again["final_loss"] == first["final_loss"] and again["step"] == 10


def _hdf5(tmp_path: Path, name: str, change=None, obs_dim=11, act_dim=3, lengths=None) -> Path:
    import h5py
    from helpers import make_d4rl_file, synthetic_episodes

    episodes = synthetic_episodes(len(lengths or [0] * 3), lengths=lengths, seed=2, obs_dim=obs_dim, act_dim=act_dim)
    path = make_d4rl_file(tmp_path / name, episodes)
    if change is not None:
        with h5py.File(path, "a") as f:
            change(f)
    return path


def _scale(key, factor, column=None):
    def change(f):
        data = f[key][...]
        if column is None:
            data *= factor
        else:
            data[:, column] *= factor
        f[key][...] = data

    return change


def _no_episode_ends(f):
    """The terminals and timeouts of every episode but the last gone: the file reads as one long episode."""
    for key in ("terminals", "timeouts"):
        flags = f[key][...]
        flags[:-1] = False
        f[key][...] = flags


def _set(key, index, value):
    def change(f):
        f[key][index] = value

    return change


BAD_DATA = {
    "walker2d data with a HalfCheetah env": (
        dict(name="walker2d-medium-v2.hdf5", obs_dim=17, act_dim=6),
        ["--set", "data.env_id=HalfCheetah-v5"],
        "walker2d-medium-v2.hdf5 is walker2d data but data.env_id=HalfCheetah-v5 is halfcheetah",
    ),
    "actions x50": (
        dict(name="hopper-medium-v2.hdf5", change=_scale("actions", 50.0)),
        [],
        "outside Hopper-v5's action space [-1, 1]",
    ),
    "a column of 1e30": (
        dict(name="hopper-medium-v2.hdf5", change=_scale("observations", 1e30, column=5)),
        [],
        "observations hold -3.25e+29 at step 0, column 5, beyond any MuJoCo value",
    ),
    "a reward of 3e38": (
        dict(name="hopper-medium-v2.hdf5", change=_set("rewards", 4, 3e38)),
        [],
        "rewards hold 3e+38 at step 4, beyond any MuJoCo value",
    ),
    # Issue 36, class 6: data whose units or episode ends are wrong, which trained and reported before.
    "a reward of 9e5": (
        dict(name="hopper-medium-v2.hdf5", change=_set("rewards", 4, 9e5)),
        [],
        "episode 0 step 4: reward 9e+05, beyond any hopper step",
    ),
    "observations x100": (
        dict(name="hopper-medium-v2.hdf5", change=_scale("observations", 100.0), lengths=[30, 30, 30]),
        [],
        "episodes start",
    ),
    "no episode ends": (
        dict(name="hopper-medium-v2.hdf5", change=_no_episode_ends, lengths=[600, 500, 400]),
        [],
        "episode 0 has 1500 steps, more than Hopper-v5's limit of 1000: its episode ends are missing",
    ),
}


@pytest.mark.parametrize("case", BAD_DATA)
@pytest.mark.parametrize("command", ["train", "datasets info"])
def test_data_is_checked_against_its_environment_before_training(tmp_path, capsys, case, command):
    hdf5_kw, sets, message = BAD_DATA[case]
    data = tmp_path / "data"
    data.mkdir()
    path = _hdf5(data, **hdf5_kw)
    if command == "train":
        argv = tiny_train_argv(tmp_path, path) + sets
    else:  # info's --env-id is what data.env_id is to train
        argv = ["datasets", "info", str(path)] + (["--env-id", sets[1].split("=")[1]] if sets else [])
    before = snapshot(tmp_path, dirs=True)
    refused(capsys, argv, message)
    assert snapshot(tmp_path, dirs=True) == before  # no run directory either


def _put(relative: str, kind: str = "file"):
    def put(run: Path) -> None:
        target = run / relative
        if kind == "file":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("the user's")
        elif kind == "dir":
            target.mkdir(parents=True)
            (target / "inside.txt").write_text("the user's")
        elif kind == "dir instead of file":
            target.unlink()
            target.mkdir()
            (target / "kept.txt").write_text("the user's")
        elif kind == "link":
            target.unlink()
            (run.parent / "elsewhere.jsonl").write_text("the user's")
            target.symlink_to(run.parent / "elsewhere.jsonl")

    return put


FOREIGN = {
    "a file in checkpoints/": (_put("checkpoints/notes.txt"), "checkpoints/notes.txt"),
    "a file inside a checkpoint": (_put("checkpoints/step-00000002/mine.txt"), "checkpoints/step-00000002/mine.txt"),
    "a file in tb/": (_put("tb/plot.png"), "tb/plot.png"),
    "a folder in tb/": (_put("tb/sub", "dir"), "tb/sub"),
    "a file in wandb/": (_put("wandb/notes.md"), "wandb/notes.md"),
    "final.json as a folder": (_put("final.json", "dir instead of file"), "final.json"),
    "config.yaml as a link": (_put("config.yaml", "link"), "config.yaml"),
}


@pytest.mark.parametrize("case", FOREIGN)
def test_force_refuses_a_run_holding_anything_train_did_not_write(tmp_path, tiny_minari, capsys, case):
    put, name = FOREIGN[case]
    argv = tiny_train_argv(tmp_path, tiny_minari[0])
    assert main(argv) == 0
    put(tmp_path / "run")
    before = snapshot(tmp_path, dirs=True)
    refused(capsys, argv + ["--force"], "--force refused", f"it holds {name}, which train does not write",
            "nothing was deleted")  # fmt: skip
    assert snapshot(tmp_path, dirs=True) == before


@pytest.mark.parametrize("sig,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_during_the_final_evaluation_is_one_line(tmp_path, tiny_minari, capsys, monkeypatch, sig, code):
    import os
    import signal

    import decision_minrnn.train as train_module

    real = train_module.evaluate_targets

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), getattr(signal, sig))  # arrives while the rollouts run
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate_targets", signalled)
    argv = tiny_train_argv(tmp_path, tiny_minari[0]) + ["--set", "eval.episodes=1", "--set", "eval.max_steps=5"]
    run = tmp_path / "run"
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err == f"interrupted: {sig}: stopped at step 2 with a checkpoint; continue with --resume --run-dir {run}", (
        err
    )
    assert not (run / "final.json").exists() and (run / "checkpoints" / "step-00000002").is_dir()
    monkeypatch.setattr(train_module, "evaluate_targets", real)
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress"]) == 0
    assert json.loads((run / "final.json").read_text())["step"] == 2


@pytest.mark.parametrize("force", [False, True])
def test_a_full_disk_while_checkpointing_loses_nothing(tmp_path, tiny_minari, capsys, monkeypatch, force):
    from safetensors import SafetensorError

    import decision_minrnn.checkpoint as checkpoint_module

    argv = tiny_train_argv(tmp_path, tiny_minari[0])
    if force:
        assert main(argv) == 0  # the earlier run that --force would replace
    before = snapshot(tmp_path, dirs=True)

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(checkpoint_module, "save_file", full_disk)
    refused(capsys, argv + (["--force"] if force else []), "cannot write checkpoint", "step-00000002",
            "the checkpoints before it are intact")  # fmt: skip
    if force:
        assert snapshot(tmp_path, dirs=True) == before  # the replaced run is back, byte for byte
    else:
        assert not list((tmp_path / "run").glob("checkpoints/*"))  # no half-written checkpoint
