"""Observation views (data.observe): the dimensions per env, one rule for the data and for every place that acts
(evaluate, Policy, the ONNX runner), seeded frame drops, and one-line refusals."""

import gymnasium as gym
import numpy as np
import pytest
from helpers import gym_loop, make_minari_dataset, synthetic_episodes, tiny_policy_run

from decision_minrnn import load_policy
from decision_minrnn.cli import main
from decision_minrnn.config import load_config
from decision_minrnn.data.episodes import load_source, with_view
from decision_minrnn.errors import ConfigError, DataError
from decision_minrnn.evaluation import evaluate_checkpoint
from decision_minrnn.train import train
from decision_minrnn.views import POSITION_SPLIT, ObservationView, ViewError, data_episode_seed, flicker_mask

MAX_STEPS = 60
TINY_RUN = [*tiny_policy_run(MAX_STEPS), "eval.target_returns=[1800]"]


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Hopper-v4", "Walker2d-v4"])
def test_positions_and_velocities_are_qpos_and_qvel_of_gymnasiums_layout(env_id):
    task = env_id.split("-")[0].lower()
    env = gym.make(env_id)
    obs, _ = env.reset(seed=3)
    for _ in range(5):
        obs, *_ = env.step(env.action_space.sample())
    qpos, qvel = env.unwrapped.data.qpos, env.unwrapped.data.qvel
    dims, positions = POSITION_SPLIT[task]
    assert obs.shape == (dims,) and positions == len(qpos) - 1 and dims - positions == len(qvel)
    if task == "walker2d":
        qvel = np.clip(qvel, -10, 10)  # Walker2d clips its velocities into the observation (Gymnasium's docs)
    for name, expected in [("positions", qpos[1:]), ("velocities", qvel), ("full", obs)]:
        view = ObservationView.build(name, dims, task)
        shown = view.start(1, [0]).step(obs[None], 0)[0]
        assert view.obs_dim == len(expected)
        np.testing.assert_allclose(shown, expected, rtol=1e-6)
    flicker = ObservationView.build("flicker", dims, task, flicker_p=0.9)
    assert flicker.obs_dim == dims + 1  # the steps since the shown frame was observed
    env.close()


def test_flicker_drops_are_seeded_and_the_same_rule_for_data_and_for_acting():
    view = ObservationView.build("flicker", 11, "hopper", flicker_p=0.6)
    obs = np.random.default_rng(0).normal(size=(300, 11)).astype(np.float32)
    whole = view.episode(obs, seed=42)  # the data's form
    stream = view.start(2, [42, 7])  # the acting form: step by step, two episodes side by side
    stepped = np.stack([stream.step(np.stack([obs[t], obs[t]]), [t, t])[0] for t in range(len(obs))])
    np.testing.assert_array_equal(whole, stepped)
    dropped = flicker_mask(42, len(obs), 0.6)
    assert not dropped[0] and 0.5 < dropped.mean() < 0.7
    assert (whole[:, -1] > 0).sum() == dropped.sum()  # a dropped frame says how long ago the shown one was
    t = int(np.flatnonzero(dropped)[0])
    np.testing.assert_array_equal(whole[t, :11], obs[t - 1])  # and repeats the last observed frame
    np.testing.assert_array_equal(view.episode(obs, seed=42), whole)  # seeded
    assert not np.array_equal(view.episode(obs, seed=43), whole)
    # a prefix of an episode's drops does not depend on how far the episode goes
    np.testing.assert_array_equal(flicker_mask(42, 50, 0.6), dropped[:50])


def test_the_offline_data_draws_each_episodes_drops_from_the_datasets_fixed_seed(minari_root):
    make_minari_dataset("test/hopper/views-v0", synthetic_episodes(4, seed=1))
    dataset = load_source("test/hopper/views-v0")
    view = ObservationView.build("flicker", 11, "hopper", flicker_p=0.9)
    viewed = with_view(dataset, view)
    for i, (raw, seen) in enumerate(zip(dataset.episodes, viewed.episodes)):
        np.testing.assert_array_equal(seen.obs, view.episode(raw.obs, data_episode_seed(dataset.name, i)))
        np.testing.assert_array_equal(seen.act, raw.act)
    again = with_view(load_source("test/hopper/views-v0"), view)
    assert all(np.array_equal(a.obs, b.obs) for a, b in zip(viewed.episodes, again.episodes))


@pytest.fixture(scope="module")
def view_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
        make_minari_dataset("test/hopper/views-v0", synthetic_episodes(8, seed=0))
        runs = {}
        for observe, backbone in [("velocities", "mingru"), ("flicker", "minlstm"), ("positions", "transformer")]:
            extra = ["data.flicker_p=0.7"] if observe == "flicker" else []
            cfg = load_config(
                None,
                ["data.source=[test/hopper/views-v0]", f"data.observe={observe}", f"model.backbone={backbone}"]
                + TINY_RUN
                + extra,
            )
            train(cfg, root / observe, progress=False)
            runs[observe] = root / observe
        yield runs


@pytest.mark.parametrize("observe", ["velocities", "flicker", "positions"])
def test_a_loaded_policy_fed_full_observations_reaches_the_returns_of_evaluate(view_runs, observe):
    run = view_runs[observe]
    reported = evaluate_checkpoint(run, episodes=3, seed=11, device="cpu")
    policy = load_policy(run)
    assert policy.view.name == observe and policy.env_obs_dim == 11
    assert policy.obs_dim == {"velocities": 6, "flicker": 12, "positions": 5}[observe]
    returns = gym_loop(policy, "Hopper-v5", [11, 12, 13], max_steps=MAX_STEPS)
    assert returns.tolist() == reported["results"][0]["returns"]


def test_the_checkpoint_and_final_json_record_the_view(view_runs):
    import json

    state = json.loads(next((view_runs["flicker"] / "checkpoints").glob("step-*/state.json")).read_text())
    assert state["data"]["view"] == {"name": "flicker", "env_obs_dim": 11, "flicker_p": 0.7, "task": "hopper"}
    assert state["data"]["obs_dim"] == 12
    assert json.loads((view_runs["velocities"] / "final.json").read_text())["observe"] == "velocities"


def test_flicker_evaluation_depends_on_the_episode_seeds_drops(view_runs):
    run = view_runs["flicker"]
    policy = load_policy(run)
    a = gym_loop(policy, "Hopper-v5", [5, 6], max_steps=MAX_STEPS)
    b = gym_loop(policy, "Hopper-v5", [5, 6], max_steps=MAX_STEPS)
    assert a.tolist() == b.tolist()  # seeded: the same seeds give the same drops and returns


def test_resuming_with_another_view_is_refused(view_runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(view_runs["velocities"], run)
    cfg = load_config(None, ["data.source=[test/hopper/views-v0]", "data.observe=positions", *TINY_RUN])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(view_runs["velocities"].parent / "minari"))
        with pytest.raises(ConfigError, match=r"--resume cannot change data.observe \(velocities -> positions\)"):
            train(cfg, run, resume=True, overrides=["data.observe=positions", "train.steps=20"], progress=False)


@pytest.mark.parametrize(
    "sets,match",
    [
        (["data.observe=partial"], "data.observe='partial' is not one of full, positions, velocities, flicker"),
        (["data.observe=flicker"], "needs data.flicker_p in"),
        (["data.observe=flicker", "data.flicker_p=1.0"], "needs data.flicker_p in"),
        (["data.flicker_p=0.5"], "applies only to data.observe=flicker"),
    ],
)
def test_bad_view_settings_are_one_line_at_load_time(sets, match, capsys, tmp_path):
    with pytest.raises(ConfigError, match=match):
        load_config(None, ["data.source=[x]", *sets])
    args = ["train", "--config", "quickstart", "--run-dir", str(tmp_path / "r"), "--no-progress"]
    assert main(args + [x for s in sets for x in ("--set", s)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_a_view_of_an_env_without_a_documented_layout_is_refused(minari_root, tmp_path, capsys):
    make_minari_dataset(
        "test/pendulum/views-v0",
        synthetic_episodes(4, seed=0, obs_dim=4, act_dim=1),
        env="InvertedPendulum-v5",
        ref_scores=(0.0, 1000.0),
    )
    cfg = load_config(None, ["data.source=[test/pendulum/views-v0]", "data.observe=velocities", *TINY_RUN])
    with pytest.raises(DataError, match="needs Hopper, Walker2d or HalfCheetah"):
        train(cfg, tmp_path / "run", progress=False)
    config = tmp_path / "pendulum.yaml"
    config.write_text("data:\n  source: test/pendulum/views-v0\n  observe: positions\n")
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--run-dir", str(tmp_path / "r2"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "InvertedPendulum-v5" in err
    with pytest.raises(ViewError, match="has 12"):  # a task's name with the wrong dims: not Gymnasium's layout
        ObservationView.build("velocities", 12, "hopper")


def test_full_is_the_default_and_changes_nothing(minari_root):
    make_minari_dataset("test/hopper/views-v0", synthetic_episodes(3, seed=2))
    dataset = load_source("test/hopper/views-v0")
    assert load_config(None, ["data.source=[x]"]).data.observe == "full"
    assert with_view(dataset, ObservationView.build("full", 11, "hopper")) is dataset


@pytest.mark.slow
@pytest.mark.parametrize("observe", ["velocities", "flicker"])
def test_the_onnx_runner_applies_the_view_and_reaches_the_returns_of_evaluate(view_runs, observe, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from decision_minrnn.onnx_runner import OnnxPolicy, rollout

    out = tmp_path / "policy.onnx"
    assert main(["export", "--checkpoint", str(view_runs[observe]), "--out", str(out)]) == 0
    reported = evaluate_checkpoint(view_runs[observe], episodes=3, seed=4, device="cpu")
    ran = rollout(OnnxPolicy(out), 3, 4, None, MAX_STEPS)
    np.testing.assert_allclose(ran["returns"], reported["results"][0]["returns"], rtol=1e-4)
