"""scripts/target_rule.py: each run's last checkpoint at its data's best episode return, on the episodes of its
headline test score, beside that headline (the held-out check of `--target-return best-episode`)."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_evaluated

from decision_minrnn.evaluation import evaluate_checkpoint
from decision_minrnn.train import train

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "target_rule.py"
spec = importlib.util.spec_from_file_location("target_rule", SCRIPT)
target_rule = importlib.util.module_from_spec(spec)
spec.loader.exec_module(target_rule)


def _rule_runs(runs, tiny_minari):
    for backbone in ("mingru", "transformer"):
        for seed in (0, 1):
            cfg = tiny_evaluated(
                tiny_minari[0], f"model.backbone={backbone}", f"train.seed={seed}", "eval.final_episodes=3",
                "eval.test_seed=100", "data.label=tiny",
            )  # fmt: skip
            train(cfg, runs / "tiny" / backbone / f"seed{seed}", progress=False)


def test_the_rule_is_scored_on_the_headline_episodes_and_compared_seed_by_seed(tiny_minari, tmp_path):
    rule_runs = tmp_path / "runs"
    _rule_runs(rule_runs, tiny_minari)
    out = target_rule.measure(rule_runs, ["tiny"], force=False)
    assert len(out["written"]) == 4 and out["kept"] == [] and out["no_checkpoint"] == []
    run = rule_runs / "tiny" / "mingru" / "seed1"
    written = json.loads((run / "target_rule.json").read_text())
    best = max(e["rewards"].sum() for e in tiny_minari[1])
    assert written["target_return"] == pytest.approx(best, rel=1e-6)
    assert (written["episodes"], written["seed"], written["step"]) == (3, 100, 12)
    # By hand: the same checkpoint and test episodes at that return give the same scores.
    (by_hand,) = evaluate_checkpoint(run, episodes=3, targets=[written["target_return"]], seed=100)["results"]
    assert written["normalized"] == by_hand["normalized"]
    # ... and those episodes are the headline's: at the headline target they reproduce final.json's score.
    final = json.loads((run / "final.json").read_text())
    (headline,) = evaluate_checkpoint(run, episodes=3, targets=[final["eval"]["target_return"]], seed=100)["results"]
    assert headline["normalized_mean"] == pytest.approx(final["eval"]["normalized_mean"], abs=1e-9)

    assert target_rule.measure(rule_runs, ["tiny"], force=False)["written"] == []
    assert target_rule.measure(rule_runs, ["other"], force=False) == {"written": [], "kept": [], "no_checkpoint": []}

    rows = {r["backbone"]: r for r in target_rule.compare(rule_runs, ["tiny"])["rows"]}
    assert set(rows) == {"mingru", "transformer"}
    mingru, transformer = rows["mingru"], rows["transformer"]
    rule = []
    for seed in (0, 1):
        run = rule_runs / "tiny" / "mingru" / f"seed{seed}"
        headline = json.loads((run / "final.json").read_text())["eval"]["normalized_mean"]
        score = json.loads((run / "target_rule.json").read_text())["normalized_mean"]
        assert mingru["per_seed"]["headline"][seed] == headline and mingru["per_seed"]["rule"][seed] == score
        rule.append(score)
    gain = np.subtract(mingru["per_seed"]["rule"], mingru["per_seed"]["headline"])
    assert mingru["gain"]["mean"] == pytest.approx(gain.mean())
    assert mingru["gain"]["ci"][0] <= gain.mean() <= mingru["gain"]["ci"][1]
    # P(mingru > transformer) by hand at the rule's target: the fraction of the 4 run pairs won, ties half.
    pairs = [(a > b) + 0.5 * (a == b) for a in rule for b in transformer["per_seed"]["rule"]]
    assert mingru["p_over_transformer_rule"]["p"] == pytest.approx(np.mean(pairs))
    assert "p_over_transformer_rule" not in transformer

    copy = tmp_path / "copy"
    shutil.copytree(rule_runs, copy)
    shutil.rmtree(copy / "tiny" / "mingru" / "seed0" / "checkpoints")
    out = target_rule.measure(copy, None, force=True)
    assert out["no_checkpoint"] == [str(copy / "tiny" / "mingru" / "seed0")] and len(out["written"]) == 3
