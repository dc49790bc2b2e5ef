"""Adding a backbone is its class and its registry entry: a toy recurrent backbone, registered in a test, is
validated by the config, built, trained, evaluated recurrently, estimated by the memory check and ordered by
the report, with no other file changed. Unknown settings for it are refused as for the built-in ones."""

import pytest
import torch
from helpers import TINY
from torch import nn

from decision_minrnn.choices import BackboneSpec, backbone_names
from decision_minrnn.config import load_config
from decision_minrnn.errors import ConfigError
from decision_minrnn.memory import training_bytes
from decision_minrnn.models import build_model, register_backbone, unregister_backbone
from decision_minrnn.train import train


class ToyBackbone(nn.Module):
    """h_t = 0.5 h_{t-1} + W x_t, y_t = h_t: the smallest linear recurrence with a step."""

    recurrent = True
    state_batch_dim = 0

    def __init__(self, cfg):
        super().__init__()
        self.inp = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.dim = cfg.embed_dim

    def initial_state(self, batch_size, device=None):
        return torch.zeros(batch_size, self.dim, device=device)

    def step(self, x_t, state):
        h = 0.5 * state + self.inp(x_t)
        return h, h

    def forward(self, x, state=None, last_only=False):
        h = self.initial_state(x.shape[0], x.device) if state is None else state
        ys = []
        for t in range(x.shape[1]):
            y, h = self.step(x[:, t], h)
            ys.append(y)
        y = torch.stack(ys, 1)
        return (y[:, -1:] if last_only else y), h


@pytest.fixture
def toy():
    register_backbone("toy", BackboneSpec(), ToyBackbone)
    yield "toy"
    unregister_backbone("toy")


def test_a_registered_backbone_trains_evaluates_and_is_reported(tmp_path, tiny_minari, toy):
    from helpers import fake_run

    from decision_minrnn.experiments.collect import backbones_of, collect_runs

    cfg = load_config(
        None,
        [f"data.source=[{tiny_minari[0]}]", *TINY, "model.backbone=toy", "train.steps=4", "eval.episodes=2",
         "train.warmup_steps=2", "eval.max_steps=10", "eval.target_returns=[3600]"],
    )  # fmt: skip
    summary = train(cfg, tmp_path / "r", progress=False)
    assert summary["backbone"] == "toy" and summary["eval_all_targets"][0]["mode"] == "recurrent"
    assert training_bytes(cfg, 11, 3, 3, 8) > 0
    assert toy in backbone_names()
    fake_run(tmp_path / "runs", "hopper-medium", "toy", 0, 40.0)
    fake_run(tmp_path / "runs", "hopper-medium", "mingru", 0, 41.0)
    runs, _ = collect_runs(tmp_path / "runs")
    assert backbones_of(runs) == ["mingru", "toy"]  # the registry's order: built-ins first, then toy


def test_settings_of_other_backbones_are_refused_for_it(toy):
    with pytest.raises(ConfigError, match="does not apply to the toy backbone"):
        load_config(None, ["model.backbone=toy", "model.n_heads=4"])
    assert isinstance(build_model(load_config(None, ["model.backbone=toy"]), 11, 3).backbone, ToyBackbone)


def test_a_class_without_the_protocol_is_refused():
    class NoStep(nn.Module):
        recurrent = True

        def forward(self, x, state=None, last_only=False):
            return x, state

    with pytest.raises(TypeError, match="lacks initial_state, step, state_batch_dim"):
        register_backbone("broken", BackboneSpec(), NoStep)
    assert "broken" not in backbone_names()
