"""What train writes for others to read: TensorBoard hparams and config text, the CSV of scalars, an offline
W&B run, the best checkpoint, evaluation callbacks. Each is read back from disk."""

import csv
import json
import re
from pathlib import Path

import pytest
from helpers import TINY, tiny_evaluated

from decision_minrnn.cli import main
from decision_minrnn.config import load_config
from decision_minrnn.train import train


def test_tensorboard_gets_hparams_with_final_scores_and_the_config(tmp_path, tiny_minari):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = train(tiny_evaluated(tiny_minari[0], "model.backbone=minlstm"), tmp_path / "r", progress=False)
    events = EventAccumulator(str(tmp_path / "r" / "tb"), size_guidance={"tensors": 0})
    events.Reload()
    assert {"train/loss", "eval/target_3600/normalized_mean"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [3, 6, 9, 12]
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "backbone: minlstm" in text
    # hparams: the plugin's session-start record names every config field; the final score is a scalar.
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.backbone"].string_value == "minlstm"
    assert start.hparams["train.steps"].number_value == 12
    final = events.Scalars("final/target_3600/normalized_mean")
    assert final[0].value == pytest.approx(summary["eval_all_targets"][0]["normalized_mean"], rel=1e-6)


def test_csv_holds_training_scalars_and_evaluations(tmp_path, tiny_minari):
    summary = train(tiny_evaluated(tiny_minari[0], "train.loggers=[csv]"), tmp_path / "r", progress=False)
    with (tmp_path / "r" / "scalars.csv").open() as f:
        rows = list(csv.DictReader(f))
    losses = [(int(r["step"]), float(r["value"])) for r in rows if r["tag"] == "train/loss"]
    assert [s for s, _ in losses] == [3, 6, 9, 12] and losses[-1][1] == pytest.approx(summary["final_loss"])
    evals = {int(r["step"]): float(r["value"]) for r in rows if r["tag"] == "eval/target_1800/normalized_mean"}
    assert sorted(evals) == [4, 8, 12] and evals[12] == pytest.approx(summary["eval_all_targets"][1]["normalized_mean"])
    assert not (tmp_path / "r" / "tb").exists()  # only the loggers asked for


def test_resume_drops_csv_rows_after_the_checkpoint(tmp_path, tiny_minari):
    cfg = tiny_evaluated(tiny_minari[0], "train.loggers=[csv]", "eval.episodes=0", "train.eval_every=0")
    train(cfg, tmp_path / "r", progress=False, stop_at=9)  # checkpoint at 6 and 9 (the stop)
    with (tmp_path / "r" / "scalars.csv").open("a") as f:
        f.write("10,train/loss,123.0\n")  # as if logged after the last checkpoint, then killed
    train(cfg, tmp_path / "r", resume=True, progress=False)
    with (tmp_path / "r" / "scalars.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["tag"] == "train/loss"]
    assert steps == [3, 6, 9, 12]


@pytest.mark.slow
def test_offline_wandb_run_records_config_scalars_and_summary(tmp_path, tiny_minari, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(
        tiny_evaluated(tiny_minari[0], "train.loggers=[wandb]", "train.wandb_project=dmr-test"),
        tmp_path / "r",
        progress=False,
    )
    records = sorted((tmp_path / "r" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(records) == 1, sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "r" / "wandb").rglob("*"))
    (record,) = records
    strings = set(re.findall(rb"[ -~]{4,}", record.read_bytes()))
    blob = b"\n".join(strings)
    for key in (
        b"train/loss",
        b"eval/target_3600/normalized_mean",
        b"final/target_1800/normalized_mean",
        b"dmr-test",
        b"mingru",
    ):
        assert key in blob, (key, record.stat().st_size)
    run_id = (tmp_path / "r" / "wandb_id").read_text()
    assert run_id in record.name


def test_missing_wandb_names_the_extra(tmp_path, tiny_minari, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)
    path = tmp_path / "c.yaml"
    path.write_text(f"data:\n  source: {tiny_minari[0]}\n")
    assert (
        main(
            [
                "train",
                "--config",
                str(path),
                "--run-dir",
                str(tmp_path / "r"),
                "--set",
                "train.loggers=[wandb]",
                *[x for o in TINY for x in ("--set", o)],
                "--set",
                "train.steps=3",
                "--set",
                "train.warmup_steps=1",
            ]
        )
        == 2
    )
    assert "pip install -e '.[wandb]' in your checkout" in capsys.readouterr().err


def test_keep_best_and_evaluate_best(tmp_path, tiny_minari, capsys):
    seen = []
    summary = train(
        tiny_evaluated(tiny_minari[0], "train.keep_best=true"),
        tmp_path / "r",
        progress=False,
        callbacks=[lambda step, results: seen.append((step, results[0]["normalized_mean"]))],
    )
    assert [s for s, _ in seen] == [4, 8, 12]  # the callback sees every evaluation
    best_step, best_score = max(seen, key=lambda x: x[1])
    best = tmp_path / "r" / "checkpoints" / "best"
    state = json.loads((best / "state.json").read_text())
    assert state["step"] == best_step and summary["best"] == {"step": best_step, "score": best_score}
    assert len([p for p in (best.parent).iterdir() if p.name.startswith("step-")]) == 2  # latest ones still kept
    assert main(["evaluate", "--checkpoint", str(tmp_path / "r"), "--best", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert Path(out["checkpoint"]).name == "best" and out["step"] == best_step
    assert out["results"][0]["normalized_mean"] == pytest.approx(best_score)


def test_evaluate_best_without_one_is_one_line(tmp_path, tiny_minari, capsys):
    train(tiny_evaluated(tiny_minari[0], "eval.episodes=0", "train.eval_every=0"), tmp_path / "r", progress=False)
    assert main(["evaluate", "--checkpoint", str(tmp_path / "r"), "--best"]) == 2
    assert "no best checkpoint" in capsys.readouterr().err


def test_unknown_logger_is_refused():
    from decision_minrnn.errors import ConfigError

    with pytest.raises(ConfigError, match="train.loggers has mlflow"):
        load_config(None, ["train.loggers=[tensorboard, mlflow]"])
