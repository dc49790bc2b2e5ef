"""load_policy / Policy: a plain Gymnasium loop reaches exactly what `evaluate` reports; restarts per env;
SB3's predict; one-line errors."""

import shutil
import warnings

import numpy as np
import pytest
import torch
from helpers import gym_loop, make_minari_dataset, synthetic_episodes, tiny_policy_run

from decision_minrnn import load_policy
from decision_minrnn.config import load_config
from decision_minrnn.errors import CheckpointError, UsageError
from decision_minrnn.evaluation import evaluate_checkpoint
from decision_minrnn.train import train

VARIANTS = [("mingru", "interleaved"), ("minlstm", "fused"), ("transformer", "interleaved"), ("gru", "fused")]
MAX_STEPS = 60


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny trained run per (backbone, layout)."""
    root = tmp_path_factory.mktemp("policy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
        make_minari_dataset("test/hopper/policy-v0", synthetic_episodes(8, seed=0))
        out = {}
        for backbone, layout in VARIANTS:
            cfg = load_config(
                None,
                [
                    "data.source=[test/hopper/policy-v0]",
                    f"model.backbone={backbone}",
                    f"model.token_layout={layout}",
                    *tiny_policy_run(MAX_STEPS),
                    "eval.target_returns=[3600, 1800]",
                ],
            )
            run = root / f"{backbone}-{layout}"
            train(cfg, run, progress=False)
            out[(backbone, layout)] = run
        yield out


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(v))
@pytest.mark.parametrize("episodes", [1, 3])
def test_a_gymnasium_loop_reaches_exactly_the_returns_of_evaluate(runs, variant, episodes):
    run = runs[variant]
    reported = evaluate_checkpoint(run, episodes=episodes, seed=7, device="cpu")
    policy = load_policy(run)
    assert policy.mode == ("window" if variant[0] == "transformer" else "recurrent")
    for result in reported["results"]:
        returns = gym_loop(policy, "Hopper-v5", [7 + i for i in range(episodes)], result["target_return"], MAX_STEPS)
        assert returns.tolist() == result["returns"]  # exactly: one rollout path


def test_window_mode_for_a_recurrent_backbone_matches_evaluate(runs):
    run = runs[("mingru", "interleaved")]
    reported = evaluate_checkpoint(run, episodes=2, mode="window", seed=3, targets=[1800.0], device="cpu")
    returns = gym_loop(load_policy(run, mode="window"), "Hopper-v5", [3, 4], 1800.0, MAX_STEPS)
    assert returns.tolist() == reported["results"][0]["returns"]


def test_single_observation_gives_a_single_clipped_action(runs):
    policy = load_policy(runs[("mingru", "interleaved")], target_return=1800)
    policy.reset()
    action = policy.act(np.zeros(11))
    assert action.shape == (3,) and np.all(np.abs(action) <= 1.0)
    assert policy.target_return == 1800.0 and policy.targets == [3600.0, 1800.0]


@pytest.mark.parametrize(
    "variant,mode",
    [
        (("mingru", "interleaved"), "recurrent"),
        (("minlstm", "fused"), "recurrent"),
        (("gru", "fused"), "recurrent"),
        (("transformer", "interleaved"), "window"),
    ],
    ids=["mingru-interleaved", "minlstm-fused", "gru-fused", "transformer-window"],
)
def test_predict_restarts_only_the_envs_marked_by_episode_start(runs, variant, mode):
    """Env 1 restarts at step 4; from then on its actions must equal those of a policy that only ever saw
    its new episode, while env 0 continues as if nothing happened."""
    policy = load_policy(runs[variant], mode=mode)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(12, 2, 11))
    rewards = rng.uniform(0, 3, size=(12, 2))
    state, both = None, []
    for t in range(12):
        start = np.array([t == 0, t in (0, 4)])
        action, state = policy.predict(obs[t], state, episode_start=start, reward=None if t == 0 else rewards[t - 1])
        both.append(action)
    env0, state0 = [], None
    for t in range(12):
        a, state0 = policy.predict(
            obs[t, :1], state0, episode_start=[t == 0], reward=None if t == 0 else rewards[t - 1, :1]
        )
        env0.append(a[0])
    env1, state1 = [], None
    for t in range(4, 12):
        a, state1 = policy.predict(
            obs[t, 1:], state1, episode_start=[t == 4], reward=None if t == 4 else rewards[t - 1, 1:]
        )
        env1.append(a[0])
    np.testing.assert_allclose(np.array(both)[:, 0], env0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.array(both)[4:, 1], env1, rtol=0, atol=1e-6)
    assert not np.allclose(np.array(both)[4:, 1], np.array(both)[4:, 0], atol=1e-3)


def test_reward_lowers_the_return_to_go(runs):
    policy = load_policy(runs[("minlstm", "fused")], target_return=3000)
    policy.reset(2)
    policy.act(np.zeros((2, 11)))
    policy.act(np.zeros((2, 11)), reward=[100.0, 0.0])
    rtg = policy.state.rtg.squeeze(1).tolist()
    assert rtg == pytest.approx([2.9, 3.0])  # (3000 - 100) / 1000, 3000 / 1000


def test_bad_inputs_are_one_line_errors(runs, tmp_path):
    policy = load_policy(runs[("mingru", "interleaved")])
    with pytest.raises(UsageError, match=r"observation of shape \(5,\) does not fit the policy's obs_dim 11"):
        policy.act(np.zeros(5))
    with pytest.raises(UsageError, match="NaN"):
        policy.act(np.full(11, np.nan))
    with pytest.raises(UsageError, match="not finite"):
        policy.reset(target_return=float("inf"))
    policy.reset(2)
    with pytest.raises(UsageError, match="act\\(\\) got 3 observations but reset\\(\\) started 2 episodes"):
        policy.act(np.zeros((3, 11)), reward=[0.0, 0.0, 0.0])
    with pytest.raises(UsageError, match="cannot step recurrently"):
        load_policy(runs[("transformer", "interleaved")], mode="recurrent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a decision-minrnn checkpoint nor a run directory"):
        load_policy(tmp_path / "empty")
    assert torch.get_num_threads() >= 1


@pytest.mark.slow
@pytest.mark.parametrize("variant", [("mingru", "interleaved"), ("minlstm", "fused")], ids=lambda v: "-".join(v))
def test_compiled_policy_acts_like_the_eager_one(runs, variant, recwarn):
    eager, compiled = load_policy(runs[variant]), load_policy(runs[variant], compile=True)
    rng = np.random.default_rng(1)
    obs, rewards = rng.normal(size=(40, 2, 11)), rng.uniform(0, 3, size=(40, 2))
    state_e = state_c = None
    for t in range(40):
        start = np.array([t == 0, t in (0, 17)])  # env 1 restarts: the compiled graph's per-env first flag
        reward = None if t == 0 else rewards[t - 1]
        a, state_e = eager.predict(obs[t], state_e, episode_start=start, reward=reward)
        b, state_c = compiled.predict(obs[t], state_c, episode_start=start, reward=reward)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    if shutil.which("g++") or shutil.which("gcc"):
        assert compiled.actor.compiled is not None, [str(w.message) for w in recwarn]  # did not silently fall back


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("gcc")), reason="torch.compile on CPU needs a C++ compiler"
)
@pytest.mark.parametrize("variant", [("mingru", "interleaved"), ("minlstm", "fused")], ids=lambda v: "-".join(v))
def test_the_compiled_step_is_one_graph_compiled_once_per_batch_size(runs, variant):
    """What made the compiled Policy slower than the eager one at 10 envs (docs/speed.md 4a): the scan broke the
    traced step's graph in every layer (its out= writes; or, once opaque_to_compile ran, the opaque call), and an
    episode's first step (return-to-go made outside inference_mode, or a state of other strides) missed the
    graph compiled for the later ones. One graph, and no recompile after reset()."""
    from decision_minrnn.models.step import RecurrentStep, flatten_state
    from decision_minrnn.nn.scan import opaque_to_compile

    torch._dynamo.reset()  # other tests' graphs of the same code would count as recompiles
    # As in a process that compiled a training run first (what CI's order once did): the scans are then opaque,
    # and the step's short sequences must still unroll into one graph (nn/scan.py UNROLL_STEPS).
    opaque_to_compile()
    policy = load_policy(runs[variant], compile=True)
    obs = np.random.default_rng(0).normal(size=(2, 11))
    policy.reset(2)  # compiles for 2 envs
    with torch._dynamo.config.patch(error_on_recompile=True), warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed compile falls back to eager with a warning
        for _ in range(2):
            policy.reset(2)
            for t in range(4):
                policy.act(obs, None if t == 0 else [1.0, 1.0])
    assert policy.actor.compiled is not None
    model = policy.model
    with torch.inference_mode():
        inputs = (torch.zeros(2, 11), torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), torch.zeros(2, 3))
        first = torch.tensor([[1.0], [0.0]])
        explained = torch._dynamo.explain(RecurrentStep(model))(*inputs, first, *flatten_state(model.initial_state(2)))
    assert explained.graph_break_count == 0, explained.break_reasons
    torch._dynamo.reset()


def test_policy_from_run_is_what_load_policy_returns(runs):
    from decision_minrnn.policy import Policy

    run = runs[("minlstm", "fused")]
    a, b = Policy.from_run(run, target_return=1800), load_policy(run, target_return=1800)
    obs = np.random.default_rng(0).normal(size=(2, 11))
    for policy in (a, b):
        policy.reset(2)
    np.testing.assert_array_equal(a.act(obs), b.act(obs))
    assert (a.mode, a.target_return, a.targets) == (b.mode, b.target_return, b.targets)
