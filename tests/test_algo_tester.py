"""One tester for every backbone x token layout (as d3rlpy's algo_tester): build, forward, update, save, load,
act; and for every recurrent one, the ONNX export and the compiled step against the eager policy. A backbone
registered in choices.BACKBONE_REGISTRY and models.BACKBONE_CLASSES, or a layout added to choices.py, is tested
here without a new line."""

import numpy as np
import pytest
import torch
from helpers import random_batch

from decision_minrnn.checkpoint import save_checkpoint
from decision_minrnn.choices import TOKEN_LAYOUTS, backbone_names
from decision_minrnn.cli import main
from decision_minrnn.config import config_to_dict, load_config
from decision_minrnn.data.info import DataInfo
from decision_minrnn.data.normalization import ObsNormalizer
from decision_minrnn.models import BACKBONE_CLASSES, build_model
from decision_minrnn.policy import load_policy
from decision_minrnn.runs import model_from_checkpoint
from decision_minrnn.update import SeedGroup

OBS, ACT, K = 11, 3, 6  # Hopper's dims, so the policy can read the real env's action bounds


RECURRENT = [b for b in backbone_names() if BACKBONE_CLASSES[b].recurrent]


def _config(backbone, layout):
    settings = ["model.embed_dim=16", "model.n_layers=2", "model.dropout=0.0", f"data.context_len={K}"]
    return load_config(None, settings + [f"model.backbone={backbone}", f"model.token_layout={layout}"])


def _save(tmp_path, cfg, model, optimizer):
    data = DataInfo(
        "test", OBS, ACT, ObsNormalizer(np.zeros(OBS, np.float32), np.ones(OBS, np.float32)), "Hopper-v5", task="hopper"
    )
    state = {"config": config_to_dict(cfg), "data": data.to_dict()}
    save_checkpoint(tmp_path, 21, model, optimizer, state, {"torch": torch.get_rng_state()})
    return data


@pytest.mark.parametrize("layout", TOKEN_LAYOUTS)
@pytest.mark.parametrize("backbone", backbone_names())
def test_build_forward_update_save_load_act(tmp_path, backbone, layout):
    cfg = _config(backbone, layout)
    torch.manual_seed(0)
    model = build_model(cfg, OBS, ACT)

    # forward: one action per step, inside tanh's range
    batch = random_batch(4, K, OBS, ACT, dtype=torch.float32, padded=True)
    pred = model(batch)
    assert pred.shape == (4, K, ACT) and pred.abs().max() < 1

    # update: a few steps on one batch lower its loss
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    update = SeedGroup([model], [optimizer], grad_clip=1.0)
    first = update.losses([batch])
    update.step(first)
    for _ in range(20):
        update.step(update.losses([batch]))
    assert update.losses([batch]).item() < 0.7 * first.item()

    # save, load: the same weights compute the same actions
    data = _save(tmp_path, cfg, model, optimizer)
    _, _, loaded_data, loaded = model_from_checkpoint(tmp_path)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(batch), model(batch))
    assert loaded_data.to_dict() == data.to_dict()

    # act: a stateful policy on raw observations, recurrent where the backbone can step
    policy = load_policy(tmp_path, target_return=1000.0)
    assert policy.mode == ("recurrent" if BACKBONE_CLASSES[backbone].recurrent else "window")
    policy.reset(2)
    obs = np.random.default_rng(0).normal(size=(2, OBS)).astype(np.float32)
    actions = [policy.act(obs + t, reward=np.ones(2)) for t in range(K + 2)]  # past the window length
    assert all(a.shape == (2, ACT) and np.isfinite(a).all() for a in actions)
    assert not np.array_equal(actions[0], actions[-1])  # the history and the observations move the action


@pytest.mark.slow  # an ONNX export and a torch.compile per variant
@pytest.mark.parametrize("layout", TOKEN_LAYOUTS)
@pytest.mark.parametrize("backbone", RECURRENT)
def test_export_and_compiled_step_act_as_the_eager_policy(tmp_path, backbone, layout):
    pytest.importorskip("onnxruntime")
    from decision_minrnn.onnx_runner import OnnxPolicy

    cfg = _config(backbone, layout)
    torch.manual_seed(0)
    model = build_model(cfg, OBS, ACT)
    for p in model.parameters():  # away from the init, so that every weight moves the action
        p.data.add_(0.05 * torch.randn_like(p))
    _save(tmp_path, cfg, model, torch.optim.AdamW(model.parameters()))
    assert main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "p.onnx")]) == 0
    eager = load_policy(tmp_path, target_return=1000.0)
    others = {"onnx": OnnxPolicy(tmp_path / "p.onnx", target_return=1000.0), "compiled": load_policy(
        tmp_path, target_return=1000.0, compile=True
    )}  # fmt: skip
    for policy in (eager, *others.values()):
        policy.reset(2)
    obs = np.random.default_rng(1).normal(size=(K + 4, 2, OBS)).astype(np.float32)
    for t in range(K + 4):
        reward = None if t == 0 else np.ones(2)
        expected = eager.act(obs[t], reward)
        for name, policy in others.items():
            np.testing.assert_allclose(policy.act(obs[t], reward), expected, atol=2e-5, err_msg=f"{name} at step {t}")
