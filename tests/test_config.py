"""Config checks that belong to the model: every backbone reads only its own settings, and every knob the
README names reaches the module that uses it."""

import re

import numpy as np
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


@pytest.mark.parametrize(
    "sets,message",
    [
        (["train.steps=300"], "train.warmup_steps=10000 is longer than the run (train.steps=300)"),
        (["train.steps=300", "train.warmup_steps=30", "train.eval_every=500"], "train.eval_every=500 is beyond"),
        (["train.keep_best=true", "eval.episodes=0"], "train.keep_best=True needs evaluations"),
        (["train.eval_every=100", "eval.episodes=0"], "train.eval_every=100 needs evaluations"),
        (["eval.final_episodes=100", "eval.episodes=0"], "eval.final_episodes=100 needs eval.episodes > 0"),
        (["data.sampler_mode=episode", "data.context_len=50"], "does not apply to data.sampler_mode=episode"),
    ],
)
def test_a_budget_that_cannot_learn_or_a_setting_that_would_do_nothing_is_refused_at_load(sets, message, capsys):
    """Before a whole run is spent (issue 38: DT's 10k warmup in a 300-step run trained to random level)."""
    from decision_minrnn.cli import main

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("bench/hopper-medium", sets)
    assert main(["train", "--config", "bench/hopper-medium", *[x for s in sets for x in ("--set", s)]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_a_saved_run_from_before_the_budget_rules_still_loads_and_evaluates(tmp_path, tiny_minari):
    """The load-time rules are for a run about to start: a checkpoint written before them (its warmup longer
    than its run, say) is still read by evaluate, load_policy and export."""
    import json

    from helpers import cli_sets, tiny_config

    from decision_minrnn import load_policy
    from decision_minrnn.cli import main

    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10)
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--run-dir", str(run), "--no-progress", *cli_sets(overrides)]) == 0
    (state_file,) = (run / "checkpoints").glob("step-*/state.json")
    state = json.loads(state_file.read_text())
    state["config"]["train"]["warmup_steps"] = 10_000  # as DT's recipe cut to 10 steps was saved before
    state_file.write_text(json.dumps(state))
    assert load_policy(run).act(np.zeros(11)).shape == (3,)
    assert main(["evaluate", "--checkpoint", str(run), "--episodes", "1", "--max-steps", "5"]) == 0


def test_every_rule_at_a_field_is_enforced_by_validate():
    """Issue 37: the allowed values stand beside each field (config.rule) and validate() loops over them, so
    a new setting's bounds are one line at the field. Every field with a rule is refused beyond it."""
    from dataclasses import fields

    from decision_minrnn.config import Config

    bad = {"choices": ("nope", "is not one of"), "positive": (0, "must be > 0")}
    bad |= {"finite": (float("nan"), "is not a finite number"), "nonnegative": (-1, "must be >= 0")}
    checked = 0
    for section in ("data", "model", "train", "eval"):
        for f in fields(type(getattr(Config(), section))):
            for kind in f.metadata:
                value, message = bad[kind]
                with pytest.raises(ConfigError, match=re.escape(f"{section}.{f.name}")) as refused:
                    load_config(None, [f"{section}.{f.name}={value}"])
                assert message in str(refused.value), (section, f.name, str(refused.value))
                checked += 1
    assert checked >= 30
