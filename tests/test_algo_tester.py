"""One tester for every backbone x token layout (as d3rlpy's algo_tester), in named stages: fit (through train(),
as a user trains), predict, learn, save / load, the stateful policy; and for every recurrent one, export (the
ONNX step and the compiled step against the eager policy). A backbone registered in choices.BACKBONE_REGISTRY
and models.BACKBONE_CLASSES, or a layout added to choices.py, is tested here without a new line."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, random_batch

from decision_minrnn.choices import TOKEN_LAYOUTS, backbone_names
from decision_minrnn.cli import main
from decision_minrnn.config import load_config
from decision_minrnn.models import BACKBONE_CLASSES
from decision_minrnn.policy import load_policy
from decision_minrnn.runs import model_from_checkpoint
from decision_minrnn.train import train
from decision_minrnn.update import SeedGroup

OBS, ACT, K = 11, 3, 8  # the tiny dataset's Hopper dims (the policy reads the real env's action bounds); TINY's K
STEPS = 12

RECURRENT = [b for b in backbone_names() if BACKBONE_CLASSES[b].recurrent]


# ----- the stages --------------------------------------------------------------------------------------------


def fit(run: Path, dataset_id: str, backbone: str, layout: str) -> Path:
    """train() a few steps on the tiny dataset: a finished run with a checkpoint and a finite loss."""
    sets = [f"data.source={dataset_id}", f"model.backbone={backbone}", f"model.token_layout={layout}"]
    budget = [f"train.steps={STEPS}", f"train.checkpoint_every={STEPS}", "train.loggers=[]", "model.dropout=0.0"]
    cfg = load_config(None, TINY + sets + budget)
    summary = train(cfg, run, progress=False)
    assert summary["finished"] and summary["step"] == STEPS and np.isfinite(summary["final_loss"])
    assert json.loads((run / "final.json").read_text())["backbone"] == backbone
    return run


def predict(model, batch) -> None:
    """One action per step, inside tanh's range."""
    pred = model(batch)
    assert pred.shape == (batch["obs"].shape[0], K, ACT) and pred.abs().max() < 1


def learn(model, batch) -> None:
    """A few updates on one batch lower its loss."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    update = SeedGroup([model], [optimizer], grad_clip=1.0)
    first = update.losses([batch])
    update.step(first)
    for _ in range(20):
        update.step(update.losses([batch]))
    assert update.losses([batch]).item() < 0.7 * first.item()
    model.eval()


def save_load(run: Path, model, batch) -> None:
    """The run's checkpoint, loaded again, computes the actions of the model train() left."""
    _, _, data, loaded = model_from_checkpoint(run)
    with torch.no_grad():
        assert torch.equal(loaded(batch), model(batch))
    assert (data.obs_dim, data.act_dim) == (OBS, ACT)


def stateful_policy(run: Path, backbone: str) -> None:
    """load_policy acts on raw observations, recurrent where the backbone can step, past the window."""
    policy = load_policy(run, target_return=1000.0)
    assert policy.mode == ("recurrent" if BACKBONE_CLASSES[backbone].recurrent else "window")
    policy.reset(2)
    obs = np.random.default_rng(0).normal(size=(2, OBS)).astype(np.float32)
    actions = [policy.act(obs + t, reward=np.ones(2)) for t in range(K + 2)]
    assert all(a.shape == (2, ACT) and np.isfinite(a).all() for a in actions)
    assert not np.array_equal(actions[0], actions[-1])  # the history and the observations move the action


def export(run: Path, out: Path) -> None:
    """The ONNX step (onnxruntime) and the compiled step act as the eager policy at every step of two episodes."""
    from decision_minrnn.onnx_runner import OnnxPolicy

    assert main(["export", "--checkpoint", str(run), "--out", str(out)]) == 0
    eager = load_policy(run, target_return=1000.0)
    others = {"onnx": OnnxPolicy(out, target_return=1000.0), "compiled": load_policy(
        run, target_return=1000.0, compile=True
    )}  # fmt: skip
    for policy in (eager, *others.values()):
        policy.reset(2)
    obs = np.random.default_rng(1).normal(size=(K + 4, 2, OBS)).astype(np.float32)
    for t in range(K + 4):
        reward = None if t == 0 else np.ones(2)
        expected = eager.act(obs[t], reward)
        for name, policy in others.items():
            np.testing.assert_allclose(policy.act(obs[t], reward), expected, atol=2e-5, err_msg=f"{name} at step {t}")


# ----- every backbone x layout -------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", TOKEN_LAYOUTS)
@pytest.mark.parametrize("backbone", backbone_names())
def test_fit_predict_learn_save_load_act(tmp_path, tiny_minari, backbone, layout):
    run = fit(tmp_path / "run", tiny_minari[0], backbone, layout)
    _, _, _, model = model_from_checkpoint(run)
    batch = random_batch(4, K, OBS, ACT, dtype=torch.float32, padded=True)
    predict(model, batch)
    save_load(run, model, batch)
    stateful_policy(run, backbone)
    learn(model, batch)


@pytest.mark.slow  # an ONNX export and a torch.compile per variant
@pytest.mark.parametrize("layout", TOKEN_LAYOUTS)
@pytest.mark.parametrize("backbone", RECURRENT)
def test_export_and_compiled_step_act_as_the_eager_policy(tmp_path, tiny_minari, backbone, layout):
    pytest.importorskip("onnxruntime")
    run = fit(tmp_path / "run", tiny_minari[0], backbone, layout)
    export(run, tmp_path / "p.onnx")
