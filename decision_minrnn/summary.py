"""What a run reports: final.json's fields (RunSummary, typed here, read back by experiments/collect.py) and the
headline of an evaluation, as DT's tables give it."""

from __future__ import annotations

from typing import TypedDict

from .config import Config
from .data.info import DataInfo
from .rollout import TargetResult


class EvalSummary(TypedDict):
    """The headline of an evaluation: the first target's (DT's higher target), as DT's tables report."""

    target_return: float
    return_mean: float
    normalized_mean: float | None
    normalized_std: float | None
    score_reference: str | None


class RunSummary(TypedDict, total=False):
    """What train() returns and final.json holds (report.py reads it back). eval, eval_all_targets and best
    are present when the run evaluated (and kept a best checkpoint); a run stopped early has name, step,
    steps and finished only."""

    name: str
    step: int
    steps: int  # a run stopped early (stop_at): the train.steps it continues to
    finished: bool
    final_loss: float
    backbone: str
    dataset: str  # the data's own name (Minari id, file name, or parts joined with +)
    label: str  # how reports name the dataset: data.label (a grid's dataset label), else dataset
    seed: int
    amp: str  # the precision it trained in (train.amp resolved: none | bf16)
    dropout_impl: str
    observe: str  # data.observe: full | positions | velocities | flicker
    behaviour_normalized: float | None
    eval: EvalSummary
    eval_all_targets: list[TargetResult]  # without timing
    # With eval.final_episodes: the test evaluation's episodes and seeds beside the training evaluations'
    # ({"test_episodes", "test_seed", "selection_episodes", "selection_seed"}); eval is then the test score.
    eval_protocol: dict
    # Summed over resumes: real (unpadded) timesteps trained on; seconds in updates; the loop's wall seconds
    # with its evaluations and checkpoints (this machine's: compare runs of one machine only).
    timesteps: int
    train_seconds: float
    wall_seconds: float
    # {"step", "score"} of checkpoints/best, score: its training evaluation's headline (what it was selected
    # by); with eval.final_episodes also "test" / "test_all_targets": its score on the test episodes.
    best: dict


class GroupSummary(TypedDict):
    """What train() returns for a seed group (train.seeds): every seed's own RunSummary."""

    name: str
    seeds: dict[int, RunSummary]


def finished_summary(cfg: Config, data: DataInfo, loss: float) -> RunSummary:
    """The fields of a finished run that do not come from its evaluations."""
    return {
        "name": cfg.name,
        "step": cfg.train.steps,
        "finished": True,
        "final_loss": loss,
        "backbone": cfg.model.backbone,
        "dataset": data.name,
        "label": cfg.data.label or data.name,
        "seed": cfg.train.seed,
        "amp": cfg.train.amp,
        "dropout_impl": cfg.model.dropout_impl,
        "observe": data.view.name,  # what the model saw of each observation (views.py); flicker_p in config.yaml
        "behaviour_normalized": data.behaviour_normalized,
    }


def summarize_eval(results: list[TargetResult]) -> EvalSummary:
    first = results[0]
    return {
        "target_return": first["target_return"],
        "return_mean": first["return_mean"],
        "normalized_mean": first.get("normalized_mean"),
        "normalized_std": first.get("normalized_std"),
        "score_reference": first.get("score_reference"),
    }


def headline(results: list[dict]) -> float:
    """The score keep_best ranks by: the first target's normalized return (its raw return without references)."""
    first = results[0]
    return first["normalized_mean"] if first.get("normalized_mean") is not None else first["return_mean"]
