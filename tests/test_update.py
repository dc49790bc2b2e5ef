"""Learning-rate schedules: values at chosen steps, and the cosine against torch's own CosineAnnealingLR."""

import math

import pytest
import torch

from decision_minrnn.config import load_config
from decision_minrnn.errors import ConfigError
from decision_minrnn.update import lr_at


def cfg(schedule, steps=1000, warmup=100, lr=1e-3, min_lr=1e-4):
    return load_config(
        None,
        [
            f"train.lr_schedule={schedule}",
            f"train.steps={steps}",
            f"train.warmup_steps={warmup}",
            f"train.lr={lr}",
            f"train.min_lr={min_lr}",
        ],
    )


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear"])
def test_warmup_is_dts_linear_ramp(schedule):
    c = cfg(schedule)
    assert lr_at(0, c) == pytest.approx(1e-5)  # lr * 1/warmup
    assert lr_at(49, c) == pytest.approx(5e-4)
    assert lr_at(99, c) == pytest.approx(1e-3)


def test_constant_stays_at_lr_after_warmup():
    c = cfg("constant")
    assert [lr_at(s, c) for s in (100, 500, 999)] == [1e-3] * 3


def test_cosine_values_at_chosen_steps():
    c = cfg("cosine")
    assert lr_at(100, c) == pytest.approx(1e-3)  # decay starts at lr
    assert lr_at(550, c) == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # half way: the mean of lr and min_lr
    assert lr_at(775, c) == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 0.75)))
    assert lr_at(1000, c) == pytest.approx(1e-4)  # the floor, at train.steps
    assert lr_at(5000, c) == pytest.approx(1e-4)  # and it stays there


def test_linear_values_at_chosen_steps():
    c = cfg("linear")
    assert lr_at(100, c) == pytest.approx(1e-3)
    assert lr_at(550, c) == pytest.approx(5.5e-4)
    assert lr_at(1000, c) == pytest.approx(1e-4)


def test_cosine_matches_torch_cosine_annealing_after_warmup():
    c = cfg("cosine", steps=300, warmup=40)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=300 - 40, eta_min=1e-4)
    for step in range(40, 300):
        assert lr_at(step, c) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9), step
        opt.step()
        sched.step()


def test_no_warmup_starts_at_lr():
    assert lr_at(0, cfg("cosine", warmup=0)) == pytest.approx(1e-3)


@pytest.mark.parametrize("min_lr", ["-1e-5", "0.01"])
def test_min_lr_outside_zero_to_lr_is_refused(min_lr):
    with pytest.raises(ConfigError, match="train.min_lr"):
        load_config(None, ["train.lr=0.001", f"train.min_lr={min_lr}"])


def test_unknown_schedule_is_refused():
    with pytest.raises(ConfigError, match="train.lr_schedule='step' is not one of constant, cosine, linear"):
        load_config(None, ["train.lr_schedule=step"])
