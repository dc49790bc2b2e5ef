import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import DEVICES, cli_sets, cli_trained_run, tiny_config, weights
from safetensors.torch import load_file

from decision_minrnn.cli import main
from decision_minrnn.config import load_config
from decision_minrnn.train import train


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backbone", ["mingru", "transformer"])
@pytest.mark.parametrize("dropout_impl", ["torch", "fast"])
def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path, tiny_minari, backbone, device, dropout_impl):
    # On CUDA this checks that the CUDA generator (dropout) is checkpointed and restored too; with
    # dropout_impl=fast, that its masks come from the checkpointed generators as torch's do.
    extra = [f"model.backbone={backbone}", f"train.device={device}", f"model.dropout_impl={dropout_impl}"]
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 30, extra)
    cfg = load_config(path, overrides)
    train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "resumed", progress=False, stop_at=20)
    summary = train(load_config(path, overrides), tmp_path / "resumed", resume=True, progress=False)
    assert summary["step"] == 30
    a, _ = weights(tmp_path / "straight")
    b, ckpt = weights(tmp_path / "resumed")
    assert ckpt.name == "step-00000030"
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_the_cli_stops_at_a_step_and_resumes_from_there(tmp_path, tiny_minari, capsys):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 30)
    run, sets = str(tmp_path / "run"), cli_sets(overrides)
    assert main(["train", "--config", str(path), "--run-dir", run, "--no-progress", "--stop-at", "20", *sets]) == 0
    out = capsys.readouterr().out
    assert (
        f"stopped at step 20 of 30 with a checkpoint; continue with decision-minrnn train --resume --run-dir {run}"
        in out
    )
    assert not (Path(run) / "final.json").exists() and weights(run)[1].name == "step-00000020"
    assert main(["train", "--resume", "--run-dir", run, "--no-progress"]) == 0
    assert json.loads((Path(run) / "final.json").read_text())["step"] == 30
    train(load_config(path, overrides), tmp_path / "straight", progress=False)
    a, b = weights(tmp_path / "straight")[0], weights(run)[0]
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_stop_at_below_one_is_one_line_and_writes_nothing(tmp_path, tiny_minari, capsys):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 30)
    run = tmp_path / "run"
    argv = ["train", "--config", str(path), "--run-dir", str(run), "--stop-at", "0", *cli_sets(overrides)]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --stop-at must be a step >= 1, got 0"]
    assert not run.exists()


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_weights(tmp_path, tiny_minari):
    # One thread in every process: float reductions split over a different thread count round differently,
    # and the in-process run would otherwise inherit whatever thread count this pytest worker has.
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 120, ["train.threads=1"])
    sets = cli_sets(overrides)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "decision_minrnn.cli", "train", "--config", str(path), "--no-progress", *sets]
    proc = subprocess.Popen(cmd + ["--run-dir", str(tmp_path / "killed")], env=env)
    ckpt_root = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not (
        ckpt_root.exists() and any(p.name.startswith("step-") for p in ckpt_root.iterdir())
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "final.json").exists(), "the run finished before it could be killed"
    resume = [sys.executable, "-m", "decision_minrnn.cli", "train", "--resume", "--no-progress"]
    subprocess.run(resume + ["--run-dir", str(tmp_path / "killed")], env=env, check=True)
    train(load_config(path, overrides), tmp_path / "straight", progress=False)
    a, _ = weights(tmp_path / "straight")
    b, _ = weights(tmp_path / "killed")
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_checkpoint_files_are_safetensors_and_json_only(tmp_path, tiny_minari):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10)
    train(load_config(path, overrides), tmp_path / "run", progress=False)
    _, ckpt = weights(tmp_path / "run")
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.safetensors", "state.json", "train.safetensors"]
    state = json.loads((ckpt / "state.json").read_text())
    assert state["format"] == "decision-minrnn-checkpoint" and state["step"] == 10
    assert state["data"]["obs_dim"] == 11 and len(state["data"]["obs_norm"]["mean"]) == 11
    assert "rng.sampler" in load_file(str(ckpt / "train.safetensors"))
    assert (tmp_path / "run" / "config.yaml").exists() and any((tmp_path / "run" / "tb").iterdir())


def test_existing_run_dir_is_not_overwritten(tmp_path, tiny_minari, capsys):
    path, sets, run = cli_trained_run(tmp_path, tiny_minari[0])
    before, _ = weights(run)
    capsys.readouterr()
    assert main(["train", "--config", str(path), "--run-dir", run, "--no-progress", *sets]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0]
    after, _ = weights(run)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert main(["train", "--config", str(path), "--run-dir", run, "--no-progress", "--force", *sets]) == 0


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.backbone=rnn", "model.backbone"),
        ("model.nonsense=1", "nonsense"),
        ("train.steps=many", "steps"),
        ("train.lr=-1", "train.lr"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path, tiny_minari, capsys, override, message):
    path, _ = tiny_config(tmp_path, tiny_minari[0], 10)
    assert main(["train", "--config", str(path), "--run-dir", str(tmp_path / "r"), "--set", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "r").exists() or not (tmp_path / "r" / "checkpoints").exists()


def test_missing_config_and_dataset_errors(tmp_path, minari_root, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  source: nobody/hopper/none-v0\n")
    assert main(["train", "--config", str(path), "--run-dir", str(tmp_path / "r")]) == 2
    assert "nobody/hopper/none-v0" in capsys.readouterr().err


def test_force_with_bad_data_keeps_the_earlier_run(tmp_path, tiny_minari, capsys):
    path, sets, run = cli_trained_run(tmp_path, tiny_minari[0])
    before, ckpt = weights(run)
    assert (
        main(
            [
                "train",
                "--config",
                str(path),
                "--run-dir",
                run,
                "--force",
                *sets,
                "--set",
                "data.source=test/hopper/missing-v0",
            ]
        )
        == 2
    )
    assert "missing-v0" in capsys.readouterr().err
    after, same_ckpt = weights(run)
    assert same_ckpt == ckpt and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backbone", ["mingru", "minlstm"])
def test_bf16_autocast_trains_with_a_float32_scan(tmp_path, tiny_minari, backbone, device):
    extra = ["train.amp=bf16", f"model.backbone={backbone}", f"train.device={device}"]
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10, extra)
    summary = train(load_config(path, overrides), tmp_path / "run", progress=False)
    assert summary["finished"] and math.isfinite(summary["final_loss"])


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_resolves_per_hardware_and_records_the_choice(tmp_path, tiny_minari, monkeypatch, native):
    # amp=auto, the default, is bf16 exactly where the CPU multiplies bf16 in hardware; the detection is
    # mocked both ways.
    monkeypatch.setattr("decision_minrnn.device.cpu_has_native_bf16", lambda: native)
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10, ["train.device=cpu"])
    cfg = load_config(path, overrides)
    assert cfg.train.amp == "auto"
    summary = train(cfg, tmp_path / "run", progress=False)
    expected = "bf16" if native else "none"
    assert summary["amp"] == expected
    assert json.loads((tmp_path / "run" / "final.json").read_text())["amp"] == expected
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["amp"] == expected
    hparams = (tmp_path / "run" / "tb").rglob("events.out.tfevents.*")
    assert any(expected.encode() in f.read_bytes() and b"train.amp" in f.read_bytes() for f in hparams)


def test_half_written_checkpoint_is_ignored_and_cleaned(tmp_path, tiny_minari):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10)
    run = tmp_path / "run"
    train(load_config(path, overrides), run, progress=False)
    stale = run / "checkpoints" / ".tmp-crashed"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    # On resume the run's saved config applies; overrides given now (more steps) go on top of it.
    summary = train(load_config(path, overrides), run, resume=True, progress=False, overrides=["train.steps=20"])
    assert summary["step"] == 20 and not stale.exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000010", "step-00000020"]


@pytest.mark.slow
def test_compile_gates_trains_to_the_same_loss_as_eager(tmp_path, tiny_minari):
    from nn.test_compiled_gates import needs_compiler

    from decision_minrnn.nn import compiled as compiled_module

    needs_compiler()
    losses = {}
    for compile_gates in (False, True):
        path, overrides = tiny_config(tmp_path, tiny_minari[0], 10, [f"model.compile_gates={compile_gates}"])
        summary = train(load_config(path, overrides), tmp_path / f"run-{compile_gates}", progress=False)
        losses[compile_gates] = summary["final_loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    assert not compiled_module._unavailable, "torch.compile fell back to eager"


@pytest.mark.slow
def test_commands_do_not_import_dynamo_unless_compiling(tmp_path):
    """torch.compiler.disable at import pulled in torch._dynamo for every command, doubling start-up."""
    code = (
        "import sys; import decision_minrnn.train, decision_minrnn.policy; from decision_minrnn.cli import main; "
        "main(['datasets', 'list']); assert 'torch._dynamo' not in sys.modules, 'dynamo imported'"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={**os.environ, "MINARI_DATASETS_PATH": str(tmp_path)},
        stdout=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_train_compile_hides_the_scans_and_trains(tmp_path, tiny_minari):
    from decision_minrnn.nn import scan

    path, overrides = tiny_config(tmp_path, tiny_minari[0], 3, ["train.compile=true", "train.log_every=1"])
    summary = train(load_config(path, overrides), tmp_path / "c", progress=False)
    assert summary["finished"] and math.isfinite(summary["final_loss"])
    assert scan.scan_sequential._opaque and scan.scan_chunked._opaque


def test_train_and_evaluate_say_what_they_are_about_to_do_before_they_start(tmp_path, tiny_minari, capsys):
    """The start line (issue 38): run directory, backbone and layout, the data and its size, the steps, the
    batch, the evaluation cadence, the device and the precision with the reason it was chosen."""
    from decision_minrnn.device import cpu_has_native_bf16

    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10)
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--run-dir", str(run), *cli_sets(overrides)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"train {run}: mingru (interleaved tokens) on {tiny_minari[0]} (")
    assert "to step 10, batch 8 (K=8)" in first and "no evaluation" in first
    reason = "this CPU has AVX512-BF16 or AMX" if cpu_has_native_bf16() else "this CPU has no AVX512-BF16 or AMX"
    assert first.endswith(f"cpu, {'bf16 autocast' if cpu_has_native_bf16() else 'float32'} (auto: {reason})")
    assert main(["evaluate", "--checkpoint", str(run), "--episodes", "1", "--max-steps", "5"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    expected = f"evaluate {run} (newest checkpoint): 1 episodes for each target from the run's eval.seed, mode "
    assert first == expected + "the run's eval.mode, device cpu"


def test_an_interactive_train_prints_a_first_eta_once_some_steps_are_timed(tmp_path, tiny_minari, capsys):
    from decision_minrnn.train import ETA_AFTER

    path, overrides = tiny_config(tmp_path, tiny_minari[0], ETA_AFTER + 5)
    assert main(["train", "--config", str(path), "--run-dir", str(tmp_path / "run"), *cli_sets(overrides)]) == 0
    out = capsys.readouterr()
    assert re.search(r"ETA: about \d+\.\d min of training left \(\d+ ms a step\)", out.out + out.err)


def test_evaluate_takes_eval_settings_by_their_config_names(tmp_path, tiny_minari, capsys):
    """Issue 37: `evaluate --set eval.*` like train's --set; the flags stay and win."""
    _, _, run = cli_trained_run(tmp_path, tiny_minari[0])
    argv = ["evaluate", "--checkpoint", run, "--json", "--set", "eval.episodes=2", "--set", "eval.max_steps=5"]
    assert main(argv + ["--set", "eval.target_returns=[1800]"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["target_return"] for r in result["results"]] == [1800.0] and result["results"][0]["episodes"] == 2
    assert main(argv + ["--episodes", "1"]) == 0
    assert {r["episodes"] for r in json.loads(capsys.readouterr().out)["results"]} == {1}
    for bad, message in (("train.lr=1", "takes eval.KEY=VALUE"), ("eval.episodes=many", "must be an integer")):
        assert main(["evaluate", "--checkpoint", run, "--set", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err


def test_the_eta_of_a_resumed_run_counts_only_this_sittings_steps(tmp_path, tiny_minari, capsys):
    from decision_minrnn.train import ETA_AFTER

    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10)
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--run-dir", str(run), "--no-progress", *cli_sets(overrides)]) == 0
    (state_file,) = (run / "checkpoints").glob("step-*/state.json")
    state = json.loads(state_file.read_text())
    state["train_seconds"] = 1e6  # an earlier sitting's seconds, as a checkpoint carries them
    state_file.write_text(json.dumps(state))
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(run), "--set", f"train.steps={10 + ETA_AFTER + 5}"]) == 0
    out = capsys.readouterr()
    minutes = float(re.search(r"ETA: about (\d+\.\d) min", out.out + out.err).group(1))
    assert minutes < 5  # not 1e6 s spread over this sitting's steps
