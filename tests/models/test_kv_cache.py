"""The transformer's KV cache in window mode: the same actions as re-running the window at every step (DT's
evaluation), for both token layouts, through restarts of single envs and past the point where the window fills
and slides (from then on the window re-runs, as DT does)."""

import numpy as np
import pytest
import torch

from decision_minrnn.config import ModelConfig
from decision_minrnn.data.info import DataInfo
from decision_minrnn.data.normalization import ObsNormalizer
from decision_minrnn.models.decision import DecisionModel
from decision_minrnn.policy import Policy


def data() -> DataInfo:
    return DataInfo("random", 5, 2, ObsNormalizer(np.zeros(5, np.float32), np.ones(5, np.float32)))


def policies(layout, K):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="transformer", embed_dim=32, n_layers=2, n_heads=2, token_layout=layout, dropout=0.0)
    model = DecisionModel(5, 2, cfg)
    return [Policy(model, data(), 100.0, context_len=K, mode="window", kv_cache=kv) for kv in (True, False)]


@pytest.mark.parametrize("layout", ["interleaved", "fused"])
def test_the_kv_cache_gives_the_actions_of_the_re_run_window(layout):
    cached, rerun = policies(layout, K=8)
    assert cached.kv_cache and not rerun.kv_cache
    rng = np.random.default_rng(0)
    states = [None, None]
    for t in range(20):  # the window fills at step 8; env 0 restarts at 6, env 2 at 9 and 15
        obs, reward = rng.normal(size=(3, 5)), None if t == 0 else rng.normal(size=3)
        start = np.array([t == 6, False, t in (9, 15)]) if t else None
        actions = []
        for i, policy in enumerate((cached, rerun)):
            action, states[i] = policy.predict(obs, states[i], episode_start=start, reward=reward)
            actions.append(action)
        np.testing.assert_allclose(actions[0], actions[1], atol=2e-6)
    # env 2 restarted at 15 and its cache serves it again; envs 0 and 1 filled their windows and re-run since
    kv_ok = states[0].backbone["kv_ok"].tolist()
    assert kv_ok == [False, False, True]


def test_the_cache_holds_one_token_per_step_fused_three_interleaved():
    for layout, per_step in (("fused", 1), ("interleaved", 3)):
        cached, _ = policies(layout, K=50)
        cached.reset(2)
        for _ in range(5):
            cached.act(np.zeros((2, 5)), None if cached.state.t[0] == 0 else np.zeros(2))
        # the first step has no previous action: interleaved holds 2 + 3 * 4 tokens after 5 steps
        assert cached.state.backbone["kv_len"].tolist() == [5 * per_step - (per_step == 3)] * 2


def test_the_cache_is_only_for_window_mode_of_a_backbone_that_has_one():
    torch.manual_seed(0)
    model = DecisionModel(5, 2, ModelConfig(backbone="mingru", embed_dim=16, n_layers=1))
    assert not Policy(model, data(), 100.0, context_len=8, mode="window").kv_cache
    assert not Policy(model, data(), 100.0, context_len=8, mode="recurrent").kv_cache
