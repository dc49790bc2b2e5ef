"""train.seeds: several seeds' models trained in one process with one vmapped step (update.SeedGroup). Each seed
must get what training it alone gives: its own init, data stream, optimizer state, checkpoint and final.json."""

import json
from pathlib import Path

import pytest
import torch
from helpers import DEVICES, cli_sets, random_batch, tiny_config, weights
from safetensors.torch import load_file

from decision_minrnn.cli import main
from decision_minrnn.config import ModelConfig, load_config
from decision_minrnn.errors import CheckpointError, ConfigError
from decision_minrnn.models import DecisionModel
from decision_minrnn.train import train
from decision_minrnn.update import SeedGroup, masked_mse, optimizer_step

CASES = [
    ("mingru", "interleaved", "sequential"),
    ("mingru", "fused", "chunked"),
    ("mingru", "fused", "log"),
    ("minlstm", "interleaved", "sequential"),
    ("minlstm", "fused", "chunked"),
    ("transformer", "interleaved", None),
    ("transformer", "fused", None),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backbone,layout,scan", CASES)
def test_a_seed_group_step_equals_each_seed_stepped_alone_in_float64(backbone, layout, scan, device):
    extra = {} if scan is None else {"scan": scan, "time_chunk": 0}
    cfg = ModelConfig(backbone=backbone, embed_dim=16, n_layers=2, dropout=0.0, token_layout=layout, **extra)
    seeds = [0, 1, 2]

    def build(seed):
        torch.manual_seed(seed)
        model = DecisionModel(5, 3, cfg, max_ep_len=100).double().to(device)
        return model, torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)

    alone, together = [build(s) for s in seeds], [build(s) for s in seeds]
    group = SeedGroup([m for m, _ in together], [o for _, o in together], grad_clip=0.25)
    for step in range(6):
        batches = [random_batch(6, 10, 5, 3, seed=100 * s + step, device=device, padded=True) for s in seeds]
        for (model, opt), batch in zip(alone, batches):
            optimizer_step(masked_mse(model(batch), batch["act"], batch["mask"]), model, opt, 0.25)
        norms = group.step(group.losses(batches))
        assert len(norms) == 3 and norms[0] != norms[1]  # per-seed clipping, not one norm over the group
    for (solo, _), (grouped, _) in zip(alone, together):
        for (name, a), b in zip(solo.named_parameters(), grouped.parameters()):
            torch.testing.assert_close(b, a, atol=1e-10, rtol=0, msg=name)
    first = [p.clone() for p in alone[0][0].parameters()]
    assert any((p - q).abs().max() > 1e-3 for p, q in zip(first, build(0)[0].parameters()))  # they did train


def member_weights(run_dir):
    return weights(run_dir)[0]


def test_train_seeds_writes_one_complete_run_per_seed_equal_to_training_it_alone(tmp_path, tiny_minari):
    # float32: under bf16 autocast (the default on a CPU with bf16 units) the vmapped and the single matmuls
    # round differently, and the two runs agree only to bf16's precision.
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 20, ["model.dropout=0.0", "name=grp", "train.amp=none"])
    cfg = load_config(path, overrides + ["train.seeds=[0,3]"])
    summary = train(cfg, tmp_path / "group", progress=False)
    assert set(summary["seeds"]) == {0, 3} and all(s["finished"] for s in summary["seeds"].values())
    for seed in (0, 3):
        run = tmp_path / "group" / f"seed{seed}"
        saved = load_config(run / "config.yaml")
        assert saved.train.seed == seed and saved.train.seeds == [] and saved.name == f"grp/seed{seed}"
        final = json.loads((run / "final.json").read_text())
        assert final["seed"] == seed and final["step"] == 20
        assert (run / "scalars.csv").is_file() and (run / "tb").is_dir()
        solo = train(load_config(path, overrides + [f"train.seed={seed}"]), tmp_path / f"solo{seed}", progress=False)
        assert solo["final_loss"] == pytest.approx(final["final_loss"], rel=1e-4)
        mine, theirs = member_weights(run), member_weights(tmp_path / f"solo{seed}")
        for name in theirs:
            torch.testing.assert_close(mine[name], theirs[name], atol=2e-5, rtol=1e-4, msg=name)
    a, b = member_weights(tmp_path / "group" / "seed0"), member_weights(tmp_path / "group" / "seed3")
    assert not torch.equal(a["embed_state.weight"], b["embed_state.weight"])  # each seed its own init


def test_an_interrupted_seed_group_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, tiny_minari):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 30, ["model.dropout=0.1"])  # the shared dropout stream
    cfg = load_config(path, overrides + ["train.seeds=[1,2]"])
    train(cfg, tmp_path / "straight", progress=False)
    assert train(cfg, tmp_path / "cut", progress=False, stop_at=20)["seeds"][1]["finished"] is False
    # Through the CLI, as a user resumes it: the group's directory, no --config.
    assert main(["train", "--resume", "--run-dir", str(tmp_path / "cut"), "--no-progress"]) == 0
    for seed in (1, 2):
        straight, (cut, ckpt) = (
            member_weights(tmp_path / "straight" / f"seed{seed}"),
            weights(tmp_path / "cut" / f"seed{seed}"),
        )
        assert ckpt.name == "step-00000030"
        for name in straight:
            assert torch.equal(straight[name], cut[name]), name


def test_one_seed_of_a_group_resumes_alone(tmp_path, tiny_minari):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10)
    train(load_config(path, overrides + ["train.seeds=[0,1]"]), tmp_path / "g", progress=False)
    run = tmp_path / "g" / "seed1"
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress", "--set", "train.steps=20"]) == 0
    assert weights(run)[1].name == "step-00000020"
    assert json.loads((run / "final.json").read_text())["seed"] == 1


def test_seed_group_refusals_are_one_line_and_touch_nothing(tmp_path, tiny_minari, capsys):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10)
    with pytest.raises(ConfigError, match="distinct"):
        load_config(path, overrides + ["train.seeds=[1,1]"])
    with pytest.raises(ConfigError, match="train.compile"):
        load_config(path, overrides + ["train.seeds=[0,1]", "train.compile=true"])
    # Members at different steps cannot step together.
    train(load_config(path, overrides + ["train.seeds=[0,1]"]), tmp_path / "g", progress=False)
    run1 = tmp_path / "g" / "seed1"
    main(["train", "--resume", "--run-dir", str(run1), "--no-progress", "--set", "train.steps=20"])

    def files():  # what the refusal must not touch (the .lock files are probed, by design)
        return {p: p.stat().st_mtime_ns for p in Path(tmp_path / "g").rglob("*") if p.name != ".lock"}

    before = files()
    capsys.readouterr()
    code = main(["train", "--resume", "--run-dir", str(tmp_path / "g"), "--no-progress", "--set", "train.steps=30"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "different steps" in err and "seed0 at 10" in err and len(err.splitlines()) == 1
    assert files() == before
    with pytest.raises(CheckpointError, match="different steps"):
        cfg = load_config(path, overrides + ["train.seeds=[0,1]", "train.steps=30"])
        train(cfg, tmp_path / "g", resume=True, overrides=["train.steps=30"], progress=False)


def test_the_cli_trains_a_seed_group_and_prints_every_seed(tmp_path, tiny_minari, capsys):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10, ["eval.episodes=1", "eval.max_steps=5"])
    sets = cli_sets(overrides + ["train.seeds=[0,1]", "eval.target_returns=[100]"])
    assert main(["train", "--config", str(path), "--run-dir", str(tmp_path / "g"), "--no-progress", *sets]) == 0
    out = capsys.readouterr().out
    assert f"run {tmp_path / 'g' / 'seed0'}" in out and f"run {tmp_path / 'g' / 'seed1'}" in out
    for seed in (0, 1):
        assert load_file(str(weights(tmp_path / "g" / f"seed{seed}")[1] / "model.safetensors"))


def test_a_group_of_one_seed_resumes_as_a_group_and_its_run_stays_a_plain_run(tmp_path, tiny_minari):
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10)
    train(load_config(path, overrides + ["train.seeds=[3]"]), tmp_path / "g", progress=False, stop_at=5)
    assert main(["train", "--resume", "--run-dir", str(tmp_path / "g"), "--no-progress"]) == 0
    run = tmp_path / "g" / "seed3"
    assert load_config(run / "config.yaml").train.seeds == []  # the group's setting is not the run's
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress", "--set", "train.steps=15"]) == 0
    assert weights(run)[1].name == "step-00000015" and not (run / "seed3").exists()


def test_a_group_resumed_with_the_sweeps_overrides_keeps_its_members_names(tmp_path, tiny_minari):
    """The sweep resumes a seed group with name=<group> and train.seeds among its overrides: the checkpoint's
    config takes them, and each member must still be the run <group>/seed<N> (its final.json's name)."""
    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10)
    group = ["train.seeds=[0,1]", "name=hopper/mingru"]
    cfg = load_config(path, overrides + group)
    train(cfg, tmp_path / "g", progress=False, stop_at=5)
    summary = train(cfg, tmp_path / "g", resume=True, overrides=overrides + group, progress=False)
    assert summary["name"] == "hopper/mingru"
    for seed in (0, 1):
        final = json.loads((tmp_path / "g" / f"seed{seed}" / "final.json").read_text())
        assert final["name"] == f"hopper/mingru/seed{seed}" and final["seed"] == seed
        assert load_config(tmp_path / "g" / f"seed{seed}" / "config.yaml").name == f"hopper/mingru/seed{seed}"


def test_a_group_resumed_before_its_first_checkpoint_keeps_its_members_names(tmp_path, tiny_minari):
    """Members stopped before their first checkpoint start again from the config.yaml they wrote; a name=
    override on the group's resume must not rename them (as it does not once they have checkpoints)."""
    import shutil

    path, overrides = tiny_config(tmp_path, tiny_minari[0], 10)
    train(
        load_config(path, overrides + ["train.seeds=[0,1]", "name=hopper/mingru"]),
        tmp_path / "g",
        progress=False,
        stop_at=5,
    )
    for seed in (0, 1):
        shutil.rmtree(tmp_path / "g" / f"seed{seed}" / "checkpoints")  # as if killed before the first one
    args = ["train", "--resume", "--run-dir", str(tmp_path / "g"), "--no-progress", "--set", "name=renamed"]
    assert main(args) == 0
    for seed in (0, 1):
        final = json.loads((tmp_path / "g" / f"seed{seed}" / "final.json").read_text())
        assert final["name"] == f"hopper/mingru/seed{seed}" and final["seed"] == seed
