import json
import sys

import numpy as np
import pytest
import torch
import yaml

from decision_minrnn.cli import main
from decision_minrnn.config import ModelConfig, load_config
from decision_minrnn.data import ObsNormalizer
from decision_minrnn.data.info import DataInfo
from decision_minrnn.data.scores import D4RL_REF_SCORES, RefScores, d4rl_ref_scores, task_of
from decision_minrnn.envs.video import VideoError, check_encoder
from decision_minrnn.models import DecisionModel
from decision_minrnn.policy import Policy
from decision_minrnn.rollout import rollout
from decision_minrnn.train import train


def roll(model, K, target, mode="recurrent", **kwargs):
    """rollout of the policy evaluate builds: the model conditioned on target, actions clipped to Hopper's."""
    data = DataInfo(
        "random",
        11,
        3,
        ObsNormalizer(np.zeros(11, np.float32), np.ones(11, np.float32)),
        env_id="Hopper-v5",
        ref_scores=d4rl_ref_scores("hopper"),
    )
    policy = Policy(model, data, target, context_len=K, mode=mode, clip_to_env=True)
    return rollout(policy, **kwargs)


@pytest.mark.parametrize("backbone,layout", [("mingru", "interleaved"), ("minlstm", "fused"), ("gru", "interleaved")])
def test_recurrent_rollout_matches_full_history_window_rollout(backbone, layout):
    """Window mode with K >= the episode re-runs the whole history from a zero state at every step:
    the recurrent rollout must take the same actions, hence reach the same returns."""
    torch.manual_seed(0)
    model = DecisionModel(11, 3, ModelConfig(backbone, embed_dim=32, n_layers=2, token_layout=layout)).eval()
    recurrent = roll(model, 40, 3600.0, episodes=3, mode="recurrent", seed=5, max_steps=40)
    window = roll(model, 40, 3600.0, episodes=3, mode="window", seed=5, max_steps=40)
    assert recurrent["lengths"] == window["lengths"]
    np.testing.assert_allclose(recurrent["returns"], window["returns"], rtol=1e-4, atol=1e-4)
    short = roll(model, 3, 3600.0, episodes=3, mode="window", seed=5, max_steps=40)
    assert short["returns"] != recurrent["returns"]  # a 3-step window really forgets


def test_rollout_reports_scores_and_timings():
    torch.manual_seed(0)
    model = DecisionModel(11, 3, ModelConfig("mingru", embed_dim=16, n_layers=1)).eval()
    out = roll(model, 20, 3600.0, episodes=2, seed=0, max_steps=30)
    assert len(out["returns"]) == 2 and out["score_reference"] == "D4RL table"
    lo, hi = D4RL_REF_SCORES["hopper"]
    assert out["normalized"][0] == pytest.approx(100 * (out["returns"][0] - lo) / (hi - lo))
    assert out["timing"]["model_seconds"] > 0 and out["timing"]["env_seconds"] > 0
    again = roll(model, 20, 3600.0, episodes=2, seed=0, max_steps=30)
    assert again["returns"] == out["returns"]  # per-episode seeds make evaluation reproducible


def test_reference_scores_table():
    assert task_of("Walker2d-v5") == "walker2d" and task_of("halfcheetah-medium-v2") == "halfcheetah"
    assert RefScores(0.0, 10.0, "x").normalize(5.0) == 50.0


@pytest.fixture
def trained_run(tmp_path, tiny_minari):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump({"data": {"source": tiny_minari[0]}}))
    cfg = load_config(
        cfg_path,
        [
            "model.embed_dim=16",
            "model.n_layers=1",
            "train.steps=10",
            "train.warmup_steps=2",
            "train.batch_size=4",
            "eval.episodes=0",
            "eval.max_steps=20",
        ],
    )
    train(cfg, tmp_path / "run", progress=False)
    return tmp_path / "run"


def test_evaluate_cli_json(trained_run, capsys):
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(trained_run),
                "--episodes",
                "2",
                "--json",
                "--target-return",
                "3600",
                "1800",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert [r["target_return"] for r in out["results"]] == [3600.0, 1800.0]
    assert out["results"][0]["mode"] == "recurrent" and out["results"][0]["score_reference"] == "minari metadata"
    assert main(["evaluate", "--checkpoint", str(trained_run), "--episodes", "1", "--mode", "window"]) == 0
    assert "window" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "not_ours", "env_mismatch"])
def test_evaluate_bad_input_exits_2(trained_run, tmp_path, capsys, case):
    args = ["evaluate", "--checkpoint", str(trained_run), "--episodes", "1"]
    if case == "missing":
        args[2] = str(tmp_path / "nothing")
    elif case == "not_ours":
        bogus = tmp_path / "bogus"
        bogus.mkdir()
        (bogus / "state.json").write_text('{"hello": 1}')
        args[2] = str(bogus)
    else:
        args += ["--env-id", "HalfCheetah-v5"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


# ----- evaluate --video -----------------------------------------------------------------------------


def record_or_skip(model, path):
    try:
        return roll(model, 20, 3600.0, episodes=2, seed=3, max_steps=25, video_path=path)
    except VideoError as exc:
        if str(exc).startswith("cannot render"):
            pytest.skip(f"no OpenGL rendering on this machine: {exc}")
        raise


@pytest.mark.slow
@pytest.mark.rendering
def test_video_records_the_first_episode_without_changing_it(tmp_path):
    imageio = pytest.importorskip("imageio.v3")
    torch.manual_seed(0)
    model = DecisionModel(11, 3, ModelConfig("mingru", embed_dim=16, n_layers=1)).eval()
    recorded = record_or_skip(model, tmp_path / "videos" / "ep.mp4")
    plain = roll(model, 20, 3600.0, episodes=2, seed=3, max_steps=25)
    assert recorded["returns"] == plain["returns"] and recorded["lengths"] == plain["lengths"]
    frames = imageio.imread(recorded["video"])
    assert frames.shape[0] == recorded["lengths"][0] + 1  # the reset frame and one per step
    assert frames.shape[-1] == 3 and frames.std() > 1  # a picture, not a blank frame
    assert not np.array_equal(frames[0], frames[-1])  # the hopper moved


def test_missing_encoder_is_one_line_exit_2(trained_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes `import imageio_ffmpeg` fail
    with pytest.raises(VideoError, match=r"pip install -e '\.\[video\]'"):
        check_encoder()
    assert main(["evaluate", "--checkpoint", str(trained_run), "--episodes", "1", "--video", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install -e '.[video]' in your checkout" in err[0]
    assert not (tmp_path / "v").exists()  # failed before any episode ran


def test_an_environment_that_cannot_be_made_is_one_line_naming_it():
    from decision_minrnn.envs.make import make_env
    from decision_minrnn.errors import EnvError

    with pytest.raises(EnvError) as info:
        make_env("NoSuchEnv-v5")
    message = str(info.value)
    assert message.startswith("cannot make environment 'NoSuchEnv-v5': ") and "\n" not in message
    make_env("Hopper-v5").close()
