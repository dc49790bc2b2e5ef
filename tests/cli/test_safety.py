"""Never lose a user's files: --force replaces only run directories and only once the new run has started,
one process per run directory, non-finite values stop with one line, signals leave a checkpoint. Every case
checks the exit code, a single line without a traceback, and that the files that existed are unchanged."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import cli_sets, cli_trained_run, save_weights_as_written, snapshot, tiny_config

from decision_minrnn.cli import main
from decision_minrnn.rundir import foreign_entry


def one_line_error(capsys, *fragments):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


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
    assert (
        main(
            [
                "train",
                "--config",
                str(path),
                "--run-dir",
                run,
                "--force",
                "--no-progress",
                *sets,
                "--set",
                "train.lr=1e20",
                "--set",
                "train.warmup_steps=0",
                "--set",
                "train.grad_clip=1e10",
            ]
        )
        == 2
    )
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
    assert (
        main(
            [
                "train",
                "--resume",
                "--run-dir",
                run,
                "--no-progress",
                "--set",
                "model.backbone=transformer",
                "--set",
                "train.steps=20",
            ]
        )
        == 2
    )
    one_line_error(capsys, "--resume cannot change model.backbone (mingru -> transformer)")
    assert main(["train", "--resume", "--run-dir", run, "--config", str(path), "--no-progress"]) == 2
    one_line_error(capsys, "--config would be ignored")
    assert snapshot(Path(run), exclude=(".lock",)) == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["--max-steps", "0"], "eval.max_steps must be > 0"),
        (["--seed", "-1"], "eval.seed=-1 must be >= 0"),
        (["--target-return", "inf"], "must be finite"),
    ],
)
def test_evaluate_refuses_bad_numbers(tmp_path, tiny_minari, capsys, args, message):
    _, _, run = cli_trained_run(tmp_path, tiny_minari[0])
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", run, "--episodes", "1", *args]) == 2
    one_line_error(capsys, message)


def _start_training(tmp_path, dataset_id, run, steps=100000):
    path, overrides = tiny_config(tmp_path, dataset_id, steps, ["train.threads=1"])
    cmd = [
        sys.executable,
        "-m",
        "decision_minrnn.cli",
        "train",
        "--config",
        str(path),
        "--no-progress",
        "--run-dir",
        str(run),
        *cli_sets(overrides),
    ]
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


def _damage(run, how):
    (ckpt,) = sorted((Path(run) / "checkpoints").glob("step-*"))[-1:]
    state_file = ckpt / "state.json"
    state = json.loads(state_file.read_text())
    if how == "train.safetensors":
        (ckpt / "train.safetensors").unlink()
        return
    if how.startswith("flip "):  # bytes flipped inside the tensor data: safetensors itself reads it happily
        _flip_bytes(ckpt / how.split()[1])
        return
    if how == "step":
        state["step"] = "abc"
    elif how == "obs_norm":
        state["data"]["obs_norm"]["mean"] = state["data"]["obs_norm"]["mean"][:3]
    elif how == "config":
        state["config"] = None
    state_file.write_text(json.dumps(state))


@pytest.mark.parametrize(
    "how,message",
    [
        ("step", "step is 'abc'"),
        ("obs_norm", "obs_norm must hold"),
        ("config", "config is missing"),
        ("train.safetensors", "has no train.safetensors"),
        ("flip train.safetensors", "train.safetensors is damaged (its SHA-256"),
        ("flip model.safetensors", "model.safetensors is damaged (its SHA-256"),
    ],
)
def test_a_damaged_checkpoint_is_one_line_and_left_alone(tmp_path, tiny_minari, capsys, how, message):
    _, _, run = cli_trained_run(tmp_path, tiny_minari[0])
    _damage(run, how)
    before = snapshot(Path(run), exclude=(".lock",))
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", run, "--no-progress", "--set", "train.steps=20"]) == 2
    one_line_error(capsys, message)
    if how != "train.safetensors":
        assert main(["evaluate", "--checkpoint", run, "--episodes", "1"]) == 2
        one_line_error(capsys, "is damaged")
    assert snapshot(Path(run), exclude=(".lock",)) == before


def _flip_bytes(path: Path, count: int = 16) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) - count, len(data)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_checkpoint_names_the_newest_intact_one_and_resume_goes_on_from_it(tmp_path, tiny_minari, capsys):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 20)
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--run-dir", str(run), "--no-progress", *cli_sets(overrides)]) == 0
    first, newest = sorted((run / "checkpoints").glob("step-*"))
    _flip_bytes(newest / "train.safetensors")  # the optimizer moments and RNG state a resume would load
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress", "--set", "train.steps=30"]) == 2
    one_line_error(capsys, f"the newest intact checkpoint is {first}")
    shutil.move(str(newest), str(tmp_path / "damaged"))  # as the message says: move it aside, resume goes on
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress", "--set", "train.steps=30"]) == 0


@pytest.mark.parametrize(
    "args,message",
    [(["--device", "foo"], "--device='foo' is not a device"), (["--video", "FILE"], "is a file; give a directory")],
)
def test_evaluate_argument_errors_before_any_rollout(tmp_path, tiny_minari, capsys, args, message):
    pytest.importorskip("imageio_ffmpeg")
    _, _, run = cli_trained_run(tmp_path, tiny_minari[0])
    (tmp_path / "FILE").write_text("keep")
    args = [str(tmp_path / "FILE") if a == "FILE" else a for a in args]
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", run, "--episodes", "1", *args]) == 2
    one_line_error(capsys, message)
    assert (tmp_path / "FILE").read_text() == "keep"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message when CUDA is missing")
def test_bench_on_a_missing_device_is_one_line(capsys):
    assert main(["bench", "--quick", "--device", "cuda"]) == 2
    one_line_error(capsys, "--device=cuda but no CUDA device is available")
    assert main(["bench", "--quick", "--device", "foo"]) == 2
    one_line_error(capsys, "is not a device")


def test_malformed_yaml_names_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  source: [a, b\nmodel:\n  backbone: mingru\n")
    assert main(["train", "--config", str(bad)]) == 2
    one_line_error(capsys, "is not valid YAML at line 3, column")


def test_string_rewards_in_an_hdf5_are_one_line(tmp_path, capsys):
    import h5py
    import numpy as np

    path = tmp_path / "hopper-medium-v2.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((4, 11))
        f["actions"] = np.zeros((4, 3))
        f["rewards"] = np.array([b"a", b"b", b"c", b"d"])
        f["terminals"] = np.array([0, 0, 0, 1])
        f["timeouts"] = np.zeros(4)
    assert main(["datasets", "info", str(path)]) == 2
    one_line_error(capsys, "rewards has dtype")


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


def test_an_unlabelled_file_is_not_given_another_parts_environment(tmp_path, capsys):
    from helpers import make_d4rl_file, synthetic_episodes

    walker = make_d4rl_file(tmp_path / "walker2d-medium-v2.hdf5", synthetic_episodes(3, obs_dim=17, act_dim=6))
    unknown = make_d4rl_file(tmp_path / "mystery.hdf5", synthetic_episodes(3, obs_dim=17, act_dim=6))
    assert main(["datasets", "info", f"{unknown}+{walker}"]) == 2
    one_line_error(capsys, "cannot tell which environment mystery comes from")
    assert main(["datasets", "info", f"{unknown}+{walker}", "--env-id", "Walker2d-v5"]) == 0


@pytest.mark.slow
def test_two_trainings_started_together_into_one_new_directory(tmp_path, tiny_minari):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 40, ["train.threads=1"])
    run = tmp_path / "shared"
    cmd = [
        sys.executable,
        "-m",
        "decision_minrnn.cli",
        "train",
        "--config",
        str(path),
        "--no-progress",
        "--run-dir",
        str(run),
        *cli_sets(overrides),
    ]
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


def test_evaluating_nan_weights_is_an_error_not_a_score(tmp_path, tiny_minari, capsys):
    from safetensors.torch import load_file

    _, _, run = cli_trained_run(tmp_path, tiny_minari[0])
    (ckpt,) = sorted((Path(run) / "checkpoints").glob("step-*"))[-1:]
    weights = load_file(str(ckpt / "model.safetensors"))
    weights["predict_action.0.bias"][:] = float("nan")
    save_weights_as_written(ckpt, weights)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", run, "--episodes", "2", "--max-steps", "20"]) == 2
    one_line_error(capsys, "non-finite")


def test_every_file_is_replaced_whole_or_not_at_all(tmp_path):
    """rundir.replaced_atomically, behind every file the package writes outside a checkpoint (final.json,
    config.yaml, scalars.csv, the sweep, the export pair, the report): an error while writing leaves every
    earlier file byte for byte and no temporary; success replaces them all."""
    from decision_minrnn.rundir import replaced_atomically, write_atomic

    a, b = tmp_path / "a.onnx", tmp_path / "a.json"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(OSError):
        with replaced_atomically(a, b) as (tmp_a, tmp_b):
            tmp_a.write_text("new a")
            raise OSError(28, "No space left on device")  # as a full disk would, before the second file
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.onnx"]
    with replaced_atomically(a, b) as (tmp_a, tmp_b):
        tmp_a.write_text("new a")
        tmp_b.write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    write_atomic(b, "newer b")
    assert b.read_text() == "newer b" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.onnx"]


def test_a_temporary_left_by_a_kill_is_part_of_the_run(tmp_path, tiny_minari):
    """A process killed between writing a temporary and renaming it leaves .NAME.tmp-PID in the run: it is
    ours, so --force may still replace the run, and a file of the user's beside it is still refused."""
    from decision_minrnn.rundir import is_run_dir

    _, _, run = cli_trained_run(tmp_path, tiny_minari[0])
    (Path(run) / ".final.json.tmp-4242").write_text("{")
    assert is_run_dir(Path(run))
    (Path(run) / "notes.tmp-1").write_text("mine")
    assert not is_run_dir(Path(run))
