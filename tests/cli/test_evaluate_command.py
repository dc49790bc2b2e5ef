"""`decision-minrnn evaluate` refuses bad arguments, damaged or impossible checkpoints and another task's
environment with one line before any rollout, and never writes over a file (--video)."""

import json
from pathlib import Path

import pytest
from helpers import (
    cli_trained_run,
    flip_bytes,
    one_line_error,
    refused,
    save_weights_as_written,
    snapshot,
    tiny_train_argv,
)

from decision_minrnn.cli import main


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


def _damage_checkpoint(run, how):
    (ckpt,) = sorted((Path(run) / "checkpoints").glob("step-*"))[-1:]
    state_file = ckpt / "state.json"
    state = json.loads(state_file.read_text())
    if how == "train.safetensors":
        (ckpt / "train.safetensors").unlink()
        return
    if how.startswith("flip "):  # bytes flipped inside the tensor data: safetensors itself reads it happily
        flip_bytes(ckpt / how.split()[1])
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
    _damage_checkpoint(run, how)
    before = snapshot(Path(run), exclude=(".lock",))
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", run, "--no-progress", "--set", "train.steps=20"]) == 2
    one_line_error(capsys, message)
    if how != "train.safetensors":
        assert main(["evaluate", "--checkpoint", run, "--episodes", "1"]) == 2
        one_line_error(capsys, "is damaged")
    assert snapshot(Path(run), exclude=(".lock",)) == before


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


def test_evaluate_refuses_another_tasks_environment(tmp_path, tiny_minari, capsys):
    run = tmp_path / "run"
    assert main(tiny_train_argv(tmp_path, tiny_minari[0])) == 0
    before = snapshot(tmp_path, dirs=True)
    refused(capsys, ["evaluate", "--checkpoint", str(run), "--env-id", "Walker2d-v5", "--episodes", "1"],
            "is hopper data but --env-id=Walker2d-v5 is walker2d")  # fmt: skip
    assert snapshot(tmp_path, dirs=True) == before


def _edit_state(change):
    def edit(ckpt: Path) -> None:
        state = json.loads((ckpt / "state.json").read_text())
        change(state)
        (ckpt / "state.json").write_text(json.dumps(state))

    return edit


def _nan_weight(ckpt: Path) -> None:
    """A checkpoint saved holding a NaN weight (a diverged run), not one damaged after it was written."""
    from safetensors.torch import load_file

    weights = load_file(str(ckpt / "model.safetensors"))
    weights["embed_state.weight"][0, 0] = float("nan")
    save_weights_as_written(ckpt, weights)


def _norm(key: str, index: int, value):
    return _edit_state(lambda state: state["data"]["obs_norm"][key].__setitem__(index, value))


BAD_CHECKPOINTS = {
    "a negative std": (_norm("std", 2, -0.5), "every std must be > 0"),
    "a zero std": (_norm("std", 0, 0.0), "every std must be > 0"),
    "a NaN mean": (_norm("mean", 1, float("nan")), "not a finite number"),
    "a text std": (_norm("std", 1, "1.0"), "not a finite number"),
    "a NaN weight": (_nan_weight, "holds non-finite weights (embed_state.weight has NaN or inf)"),
}


@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
@pytest.mark.parametrize("command", ["evaluate", "resume", "export"])
def test_a_checkpoint_with_impossible_values_is_refused(tmp_path, tiny_minari, capsys, case, command):
    damage, message = BAD_CHECKPOINTS[case]
    argv = tiny_train_argv(tmp_path, tiny_minari[0])
    assert main(argv) == 0
    (ckpt,) = (tmp_path / "run" / "checkpoints").glob("step-*")
    damage(ckpt)
    before = snapshot(tmp_path, dirs=True)
    run = str(tmp_path / "run")
    commands = {
        "evaluate": ["evaluate", "--checkpoint", run, "--episodes", "1", "--max-steps", "5"],
        "resume": ["train", "--resume", "--run-dir", run, "--no-progress", "--set", "train.steps=4"],
        "export": ["export", "--checkpoint", run, "--out", str(tmp_path / "p.onnx")],
    }
    if command == "export":
        pytest.importorskip("onnxscript")
    refused(capsys, commands[command], message)
    assert snapshot(tmp_path, dirs=True) == before


def test_evaluate_video_never_writes_over_a_file(tmp_path, tiny_minari, capsys):
    pytest.importorskip("imageio_ffmpeg")
    assert main(tiny_train_argv(tmp_path, tiny_minari[0])) == 0
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "Hopper-v5-target1800-seed0.mp4").write_text("the user's")  # the name the second target's video gets
    before = snapshot(tmp_path, dirs=True)
    argv = ["evaluate", "--checkpoint", str(tmp_path / "run"), "--episodes", "1", "--max-steps", "5"]
    refused(capsys, argv + ["--video", str(videos)], "Hopper-v5-target1800-seed0.mp4 already exist", "remove them")
    assert snapshot(tmp_path, dirs=True) == before
