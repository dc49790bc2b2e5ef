"""Config checks that belong to the model: every backbone reads only its own settings, and every knob the
README names reaches the module that uses it."""

import pytest
import torch

from decision_minrnn.config import load_config
from decision_minrnn.errors import ConfigError


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model.backbone=mingru", "model.forget_bias=1.0"], "model.forget_bias=1.0 does not apply to the mingru"),
        (
            ["model.backbone=transformer", "model.conv_kernel=4"],
            "model.conv_kernel=4 does not apply to the transformer",
        ),
        (["model.backbone=gru", "model.scan=log"], "model.scan=log does not apply to the gru"),
        (["model.backbone=minlstm", "model.n_heads=2"], "model.n_heads=2 does not apply to the minlstm"),
        (["model.time_chunk=-1"], "model.time_chunk=-1 must be >= 0"),
    ],
)
def test_a_setting_the_backbone_would_ignore_is_an_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_every_minrnn_setting_reaches_the_cell_from_the_config():
    from decision_minrnn.models import build_model

    cfg = load_config(
        None,
        [
            "model.backbone=minlstm",
            "model.forget_bias=2.0",
            "model.time_chunk=0",
            "model.expansion=1.5",
            "model.scan=chunked",
            "model.n_layers=2",
        ],
    )
    cells = [block.cell for block in build_model(cfg, 11, 3).backbone.stack.blocks]
    assert len(cells) == 2
    for cell in cells:
        assert cell.time_chunk is None and cell.scan == "chunked" and cell.hidden_dim == 192
        assert torch.all(cell.to_gates.bias[: cell.hidden_dim] == 2.0)
