"""The table of bad inputs: one parametrized test per class, each case run through the real CLI or API,
checking the exit code, the one line (its words), no traceback, and that every file that existed before is
byte-identical afterwards (and that nothing new was written where the command was refused)."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import fake_run, save_weights_as_written, snapshot

from decision_minrnn.cli import main
from decision_minrnn.errors import UsageError
from decision_minrnn.rundir import earlier_output


def refused(capsys, argv: list[str], *fragments: str) -> str:
    """Runs the CLI, expects exit 2 with one line on stderr holding every fragment; returns that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


# ----- grids and sweeps --------------------------------------------------------------------------------------
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


# ----- reports and comparisons -------------------------------------------------------------------------------
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


# ----- the exported policy (onnx_runner) ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import torch

    from decision_minrnn.config import ModelConfig
    from decision_minrnn.export import write_onnx
    from decision_minrnn.models import DecisionModel

    torch.manual_seed(0)
    model = DecisionModel(11, 3, ModelConfig("mingru", embed_dim=8, n_layers=1))
    path = tmp_path_factory.mktemp("onnx") / "policy.onnx"
    meta = {
        "env_id": "Hopper-v5",
        "obs_mean": [0.0] * 11,
        "obs_std": [1.0] * 11,
        "rtg_scale": 1000.0,
        "target_returns": [3600.0],
        "action_low": [-1.0] * 3,
        "action_high": [1.0] * 3,
    }
    write_onnx(model, path, meta)
    return path


def _damage(path: Path, how: str) -> None:
    meta = path.with_suffix(".json")
    if how == "truncated onnx":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    elif how == "truncated json":
        meta.write_text(meta.read_text()[:40])
    elif how == "json without obs_std":
        data = json.loads(meta.read_text())
        del data["obs_std"]
        meta.write_text(json.dumps(data))
    elif how == "negative std":
        data = json.loads(meta.read_text())
        data["obs_std"][3] = -1.0
        meta.write_text(json.dumps(data))
    elif how == "another export's json":  # a JSON beside a graph it was not written with
        data = json.loads(meta.read_text())
        data["onnx_sha256"] = "0" * 64
        meta.write_text(json.dumps(data))


DAMAGES = {
    "truncated onnx": "is not a readable ONNX model",
    "truncated json": "is not the metadata of an export",
    "json without obs_std": "is not the metadata of an export",
    "negative std": "every std > 0",
    "another export's json": "belongs to another export than",
}


@pytest.mark.slow  # ONNX exports
@pytest.mark.parametrize("how", DAMAGES)
def test_the_runner_refuses_a_damaged_export_with_one_line(exported, tmp_path, how):
    for suffix in (".onnx", ".json"):
        (tmp_path / f"policy{suffix}").write_bytes(exported.with_suffix(suffix).read_bytes())
    path = tmp_path / "policy.onnx"
    _damage(path, how)
    before = snapshot(tmp_path, dirs=True)
    done = subprocess.run(
        [sys.executable, "-m", "decision_minrnn.onnx_runner", str(path), "--episodes", "1", "--max-steps", "3"],
        capture_output=True,
        text=True,
    )
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert DAMAGES[how] in err, err
    assert snapshot(tmp_path, dirs=True) == before


BAD_STEPS = {
    "NaN observation": (lambda obs: obs * np.nan, None, "observation contains NaN or inf"),
    "inf observation": (lambda obs: obs + np.inf, None, "observation contains NaN or inf"),
    "NaN reward": (lambda obs: obs, [np.nan, 1.0], "reward must hold 2 finite values"),
    "reward of the wrong length": (lambda obs: obs, [1.0], "reward must hold 2 finite values"),
    "observation of the wrong width": (lambda obs: obs[:, :5], None, "does not fit the policy's obs_dim 11"),
}


@pytest.mark.slow  # ONNX exports
@pytest.mark.parametrize("case", BAD_STEPS)
def test_onnx_policy_refuses_what_the_torch_policy_refuses(exported, case):
    from decision_minrnn.onnx_runner import OnnxPolicy, PolicyInputError

    change_obs, reward, message = BAD_STEPS[case]
    policy, clean = OnnxPolicy(exported), OnnxPolicy(exported)
    obs = np.random.default_rng(0).normal(size=(2, 11)).astype(np.float32)
    for p in (policy, clean):
        p.reset(2)
        p.act(obs)
    with pytest.raises(PolicyInputError, match=message):
        policy.act(change_obs(obs), reward)
    # A refused step changes nothing: the next good step gives the actions of a policy that never saw it.
    np.testing.assert_array_equal(policy.act(obs, [1.0, 1.0]), clean.act(obs, [1.0, 1.0]))


@pytest.mark.slow  # ONNX exports
@pytest.mark.parametrize(
    "call,message",
    [
        (lambda p, obs: p.reset(2.5), "n must be an integer >= 1"),
        (lambda p, obs: p.reset(0), "n must be an integer >= 1"),
        (lambda p, obs: p.reset(2, target_return=float("nan")), "is not finite"),
        (lambda p, obs: p.act(obs[:1], [1.0]), "act() got 1 observations but reset() started 2 episodes"),
    ],
    ids=["reset-2.5", "reset-0", "nan-target", "batch-shrinks-mid-episode"],
)
def test_the_torch_and_onnx_policies_refuse_the_same_calls(exported, tmp_path, call, message):
    """Issue 36, class 8: the Python API refuses with its one-line error (UsageError, PolicyInputError), never a
    raw TypeError or a silent restart, and both policies refuse the same things."""
    from decision_minrnn.onnx_runner import OnnxPolicy, PolicyInputError

    obs = np.random.default_rng(0).normal(size=(2, 11)).astype(np.float32)
    onnx = OnnxPolicy(exported)
    onnx.reset(2)
    onnx.act(obs)
    with pytest.raises(PolicyInputError, match=re.escape(message)):
        call(onnx, obs)
    import torch

    from decision_minrnn.config import ModelConfig
    from decision_minrnn.data.info import DataInfo
    from decision_minrnn.data.normalization import ObsNormalizer
    from decision_minrnn.models import DecisionModel
    from decision_minrnn.policy import Policy

    torch.manual_seed(0)  # the exported fixture's model
    model = DecisionModel(11, 3, ModelConfig("mingru", embed_dim=8, n_layers=1))
    data = DataInfo("random", 11, 3, ObsNormalizer(np.zeros(11, np.float32), np.ones(11, np.float32)))
    torch_policy = Policy(model, data, 3600.0)
    torch_policy.reset(2)
    torch_policy.act(obs)
    with pytest.raises(UsageError, match=re.escape(message)):
        call(torch_policy, obs)


def test_predict_refuses_an_episode_start_of_the_wrong_length(trained_run):
    from decision_minrnn import load_policy

    policy = load_policy(trained_run[0])
    obs = np.zeros((2, 11), dtype=np.float32)
    _, state = policy.predict(obs)
    for bad in ([True], [True, False, True], ["yes", "no"]):
        with pytest.raises(UsageError, match="episode_start must hold 2 booleans"):
            policy.predict(obs, state, episode_start=bad)
    with pytest.raises(UsageError, match="n must be an integer"):
        policy.reset(2.5)


# ----- data that does not fit its environment, or cannot be real ------------------------------------------------
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


def tiny_train_argv(tmp_path: Path, source) -> list[str]:
    """`train` of a tiny model for two steps on `source` into tmp_path/run (the config file written now)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(f"data:\n  source: [{source}]\n")
    tiny = ["model.embed_dim=8", "model.n_layers=1", "train.steps=2", "train.batch_size=2", "eval.episodes=0"]
    tiny.append("train.warmup_steps=1")
    argv = ["train", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress"]
    return argv + [x for o in tiny for x in ("--set", o)]


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


def test_evaluate_refuses_another_tasks_environment(tmp_path, tiny_minari, capsys):
    run = tmp_path / "run"
    assert main(tiny_train_argv(tmp_path, tiny_minari[0])) == 0
    before = snapshot(tmp_path, dirs=True)
    refused(capsys, ["evaluate", "--checkpoint", str(run), "--env-id", "Walker2d-v5", "--episodes", "1"],
            "is hopper data but --env-id=Walker2d-v5 is walker2d")  # fmt: skip
    assert snapshot(tmp_path, dirs=True) == before


# ----- --force onto a run that holds something train did not write -----------------------------------------------
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


# ----- export never replaces a file it did not write ----------------------------------------------------------------
@pytest.fixture
def trained_run(tmp_path, tiny_minari):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    assert main(tiny_train_argv(tmp_path, tiny_minari[0])) == 0
    out = tmp_path / "out"
    out.mkdir()
    return tmp_path / "run", out


EXPORT_CLASHES = {
    "a json of the user's beside": ({"policy.json": '{"mine": 1}'}, [], "policy.json already exist"),
    "a json of the user's, with --force": ({"policy.json": '{"mine": 1}'}, ["--force"], "is not an earlier export"),
    "an onnx of the user's, with --force": ({"policy.onnx": "bytes"}, ["--force"], "is not an earlier export"),
    "an onnx of the user's": ({"policy.onnx": "bytes"}, [], "policy.onnx already exist"),
}


@pytest.mark.parametrize("case", EXPORT_CLASHES)
def test_export_refuses_to_replace_a_file_it_did_not_write(trained_run, tmp_path, capsys, case):
    run, out = trained_run
    files, flags, message = EXPORT_CLASHES[case]
    for name, text in files.items():
        (out / name).write_text(text)
    before = snapshot(tmp_path, dirs=True)
    refused(capsys, ["export", "--checkpoint", str(run), "--out", str(out / "policy.onnx"), *flags], message)
    assert snapshot(tmp_path, dirs=True) == before


@pytest.mark.slow  # ONNX exports
def test_export_force_replaces_an_earlier_export_and_a_failed_write_leaves_it(trained_run, capsys, monkeypatch):
    run, out = trained_run
    argv = ["export", "--checkpoint", str(run), "--out", str(out / "policy.onnx")]
    assert main(argv) == 0
    first = snapshot(out, dirs=True)
    refused(capsys, argv, "already exist", "--force")
    assert main(argv + ["--force"]) == 0 and set(snapshot(out, dirs=True)) == set(first)

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)  # the metadata write fails after the graph was saved
    before = snapshot(out, dirs=True)
    refused(capsys, argv + ["--force"], "cannot write", "No space left on device")
    assert snapshot(out, dirs=True) == before  # the earlier export, whole; no temporary left beside it


# ----- checkpoints whose restored values cannot be right --------------------------------------------------------
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


# ----- a missing Minari id on a machine that cannot download ----------------------------------------------------
@pytest.mark.parametrize("why", ["HF_HUB_OFFLINE", "no name resolution"])
def test_a_missing_minari_id_fails_at_once_without_downloading(minari_root, capsys, monkeypatch, why):
    import socket

    import minari

    real_load = minari.load_dataset

    def load(dataset_id, download=False):
        assert not download, "minari's download (and huggingface_hub's 24 s of retries) must not start"
        return real_load(dataset_id, download=False)

    monkeypatch.setattr(minari, "load_dataset", load)
    if why == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        message = "and HF_HUB_OFFLINE is set, so it was not downloaded"
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

        def no_dns(host, *args, **kwargs):
            raise socket.gaierror(-2, "Name or service not known")

        monkeypatch.setattr(socket, "getaddrinfo", no_dns)
        message = "huggingface.co does not resolve"
    before = snapshot(minari_root, dirs=True)
    refused(capsys, ["datasets", "info", "mujoco/hopper/nowhere-v0"], "'mujoco/hopper/nowhere-v0' is not in", message)
    assert snapshot(minari_root, dirs=True) == before


# ----- a signal during the final evaluation ---------------------------------------------------------------------
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


# ----- a disk that fills up while a checkpoint is written -------------------------------------------------------
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


# ----- the one "replace only what we wrote" decision behind evaluate --sweep-out, export --out, report --out -------
def _ours(doc: dict) -> bool:
    return doc.get("written_by") == "us"


EARLIER_OUTPUTS = {  # what lies in the folder -> (which of a.json, b.bin exist, all ours?)
    "nothing": ({}, ([], False)),
    "our marker and its partner": ({"a.json": '{"written_by": "us"}', "b.bin": "x"}, (["a.json", "b.bin"], True)),
    "a marker of the user's": ({"a.json": '{"written_by": "me"}'}, (["a.json"], False)),
    "a marker that is not an object": ({"a.json": '["written_by"]'}, (["a.json"], False)),
    "a marker that is not JSON": ({"a.json": "{written_by"}, (["a.json"], False)),
    "a partner without its marker": ({"b.bin": "x"}, (["b.bin"], False)),
    "our marker, reached by a symlink": ({"a.json": "->", "real.json": '{"written_by": "us"}'}, (["a.json"], False)),
    "our marker, a partner that is a symlink": (
        {"a.json": '{"written_by": "us"}', "b.bin": "->", "real.json": "x"}, (["a.json", "b.bin"], False)),
    "our marker, a partner that is a directory": ({"a.json": '{"written_by": "us"}', "b.bin": "/"},
                                                  (["a.json", "b.bin"], False)),
}  # fmt: skip


@pytest.mark.parametrize("files, expected", EARLIER_OUTPUTS.values(), ids=EARLIER_OUTPUTS.keys())
def test_earlier_output_is_ours_only_when_every_file_is_a_regular_file_and_the_marker_says_so(
    tmp_path, files, expected
):
    for name, text in files.items():
        if text == "->":
            (tmp_path / name).symlink_to(tmp_path / "real.json")
        elif text == "/":
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_text(text)
    present, ours = earlier_output([tmp_path / "a.json", tmp_path / "b.bin"], tmp_path / "a.json", _ours)
    assert ([p.name for p in present], ours) == expected
