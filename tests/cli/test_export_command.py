"""`decision-minrnn export` and the ONNX runner it writes for: a damaged export is one line, the ONNX and torch
policies refuse the same calls, and export never replaces a file it did not write."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    refused,
    snapshot,
)

from decision_minrnn.cli import main
from decision_minrnn.errors import UsageError


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


def _damage_export(path: Path, how: str) -> None:
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
    _damage_export(path, how)
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
def test_a_target_that_is_not_a_number_is_the_callers_error_not_the_metadatas(exported):
    from decision_minrnn.onnx_runner import OnnxPolicy, PolicyInputError

    with pytest.raises(PolicyInputError, match=re.escape("target return 'high' is not a number")):
        OnnxPolicy(exported, target_return="high")


@pytest.mark.slow  # ONNX exports
@pytest.mark.parametrize(
    "call,message",
    [
        (lambda p, obs: p.reset(2.5), "n must be an integer >= 1"),
        (lambda p, obs: p.reset(0), "n must be an integer >= 1"),
        (lambda p, obs: p.reset(2, target_return=float("nan")), "is not finite"),
        (lambda p, obs: p.act(obs[:1], [1.0]), "act() got 1 observations but reset() started 2 episodes"),
        (lambda p, obs: p.reset(2, target_return="high"), "target return 'high' is not a number"),
        (lambda p, obs: p.act(obs, ["a", "b"]), "reward must hold 2 finite values, got ['a', 'b']"),
        (lambda p, obs: p.act([[1.0, 2.0], [3.0]]), "observation [[1.0, 2.0], [3.0]] is not an array of numbers"),
    ],
    ids=["reset-2.5", "reset-0", "nan-target", "batch-shrinks-mid-episode", "text-target", "text-reward", "ragged"],
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
