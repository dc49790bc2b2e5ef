"""scripts/bench_peer_dt.py: transformers' DecisionTransformerModel fed by our sampler and scored by our
evaluator. The comparison is only fair if the peer sees our batches exactly as our model does."""

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from decision_minrnn.config import load_config  # noqa: E402
from decision_minrnn.data.episodes import load_source  # noqa: E402
from decision_minrnn.data.info import DataInfo  # noqa: E402
from decision_minrnn.data.normalization import ObsNormalizer  # noqa: E402
from decision_minrnn.data.sampler import WindowSampler  # noqa: E402
from decision_minrnn.device import resolve_amp  # noqa: E402
from decision_minrnn.rollout import evaluate_targets  # noqa: E402
from decision_minrnn.update import masked_mse  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_peer_dt.py"
spec = importlib.util.spec_from_file_location("bench_peer_dt", SCRIPT)
peer_dt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer_dt)


def setup(dataset_id, extra=()):
    cfg = load_config(
        None,
        [
            f"data.source=[{dataset_id}]",
            *peer_dt.DT_RECIPE,
            "model.embed_dim=32",
            "model.n_layers=2",
            "data.context_len=10",
            "train.batch_size=16",
            "train.lr=0.001",
            "train.warmup_steps=1",
            *extra,
        ],
    )
    dataset = load_source(cfg.data.source)
    return cfg, dataset, ObsNormalizer.fit(dataset.episodes)


def test_peer_is_causal_under_our_right_padding(tiny_minari):
    cfg, dataset, obs_norm = setup(tiny_minari[0])
    sampler = WindowSampler(dataset, obs_norm, 10, 64, seed=0)
    batch = sampler.sample()
    assert not batch["mask"].all(), "the batch should contain padded windows"
    peer = peer_dt.PeerDT(dataset.obs_dim, dataset.act_dim, cfg).eval()
    with torch.no_grad():
        out = peer(batch)
        assert out.shape == batch["act"].shape
        poked = {k: v.clone() for k, v in batch.items()}
        pad = ~batch["mask"]
        poked["obs"][pad] = 5.0
        poked["rtg"][pad] = 3.0
        poked["act"][pad] = 0.7
        changed = peer(poked)
    assert torch.equal(out[batch["mask"]], changed[batch["mask"]])


def test_peer_trains_on_our_batches_and_our_evaluator_scores_it(tiny_minari):
    cfg, dataset, obs_norm = setup(tiny_minari[0], ["eval.target_returns=[3600]", "eval.episodes=2"])
    held_out = WindowSampler(dataset, obs_norm, 10, 256, seed=99).sample()
    torch.manual_seed(0)
    untrained = peer_dt.PeerDT(dataset.obs_dim, dataset.act_dim, cfg).eval()
    with torch.no_grad():
        before = masked_mse(untrained(held_out), held_out["act"], held_out["mask"]).item()
    peer, seconds = peer_dt.train_peer(cfg, dataset, obs_norm, steps=60)
    peer.eval()
    with torch.no_grad():
        after = masked_mse(peer(held_out), held_out["act"], held_out["mask"]).item()
    assert seconds > 0 and after < 0.5 * before  # the synthetic actions are a smooth function of the state
    data = DataInfo.of(dataset, obs_norm)
    (result,) = evaluate_targets(peer, cfg, data, [3600.0], 2, "window", 0, 20, torch.device("cpu"))
    assert result["mode"] == "window" and len(result["returns"]) == 2 and result["normalized_mean"] is not None


def test_ours_computes_the_peers_actions_from_the_peers_weights(tiny_minari):
    """Same weights, same function: what differs between our transformer and the peer is the initialisation
    (and the order of dropout draws), nothing in the forward pass."""
    from decision_minrnn.models import build_model

    cfg, dataset, obs_norm = setup(tiny_minari[0])
    batch = WindowSampler(dataset, obs_norm, 10, 32, seed=1).sample()
    torch.manual_seed(0)
    peer = peer_dt.PeerDT(dataset.obs_dim, dataset.act_dim, cfg).eval()
    with torch.no_grad():
        peer.hf.encoder.wpe.weight.zero_()
    ours = build_model(cfg, dataset.obs_dim, dataset.act_dim).eval()
    with torch.no_grad():
        before = ours(batch)
        peer_dt.copy_peer_into_ours(peer, ours)
        theirs, mine = peer(batch)[batch["mask"]], ours(batch)[batch["mask"]]
    assert not torch.allclose(before[batch["mask"]], theirs, atol=1e-3)  # the copy is what makes them agree
    torch.testing.assert_close(mine, theirs, atol=2e-6, rtol=1e-5)


def test_the_peer_copy_refuses_a_nonzero_position_embedding(tiny_minari):
    from decision_minrnn.models import build_model

    cfg, dataset, _ = setup(tiny_minari[0])
    peer = peer_dt.PeerDT(dataset.obs_dim, dataset.act_dim, cfg)
    with pytest.raises(ValueError, match="position-0 embedding"):
        peer_dt.copy_peer_into_ours(peer, build_model(cfg, dataset.obs_dim, dataset.act_dim))


def test_summary_gives_intervals_the_improvement_probability_and_the_rank_test():
    runs = [
        {"seed": s, "variant": v, "normalized": {"3600": score}, "fixed_windows_mse": 0.03}
        for v, scores in {"peer": [42.1, 36.9, 37.9], "ours-gpt2-init": [66.3, 51.9, 60.2]}.items()
        for s, score in enumerate(scores)
    ]
    row = peer_dt.summarize(runs, reps=100)["3600"]["ours-gpt2-init"]
    assert row["n"] == 3 and row["mean"] == pytest.approx((66.3 + 51.9 + 60.2) / 3)
    assert row["seeds"] == {0: 66.3, 1: 51.9, 2: 60.2}
    assert row["inside_peer_ci"] is False and row["p_beats_peer"] == pytest.approx(1.0)
    assert row["rank_test_p"] == pytest.approx(0.1)  # every seed above the peer's, still only 2 / C(6, 3)
    assert "rank_test_p" not in peer_dt.summarize(runs, reps=100)["3600"]["peer"]


def test_summary_compares_every_pair_of_variants():
    scores = {"ours-gpt2-init": [66.3, 51.9, 60.2], "peer": [42.1, 36.9, 37.9], "peer-no-pos": [50.0, 40.0, 61.0]}
    runs = [
        {"seed": s, "variant": v, "normalized": {"3600": score}}
        for v, values in scores.items()
        for s, score in enumerate(values)
    ]
    runs.append({"seed": 0, "variant": "ours", "normalized": {"3600": 30.0}})  # one seed: in no pair
    pairs = {(p["x"], p["y"]): p for p in peer_dt.summarize(runs, reps=100)["3600"]["pairs"]}
    assert set(pairs) == {("ours-gpt2-init", "peer"), ("ours-gpt2-init", "peer-no-pos"), ("peer", "peer-no-pos")}
    # ours-gpt2-init against peer-no-pos: 66.3 beats all 3, 51.9 beats 50.0 and 40.0, 60.2 beats 50.0 and 40.0
    assert pairs[("ours-gpt2-init", "peer-no-pos")]["p_x_beats_y"] == pytest.approx(7 / 9)
    assert pairs[("peer", "peer-no-pos")]["p_x_beats_y"] == pytest.approx(1 / 9)  # only 42.1 > 40.0
    assert pairs[("ours-gpt2-init", "peer")]["rank_test_p"] == pytest.approx(0.1)


def test_peer_without_its_position_vector_trains_and_stays_our_function(tiny_minari):
    """peer-no-pos: the position table stays zero through training, so the trained peer still copies into ours
    and gives the same actions, while the ordinary peer's position-0 vector does move."""
    from decision_minrnn.models import build_model

    cfg, dataset, obs_norm = setup(tiny_minari[0])
    batch = WindowSampler(dataset, obs_norm, 10, 32, seed=1).sample()
    peer, _ = peer_dt.train_peer(cfg, dataset, obs_norm, steps=5, position_vector=False)
    assert not peer.hf.encoder.wpe.weight.requires_grad and peer.hf.encoder.wpe.weight.abs().max() == 0
    ours = build_model(cfg, dataset.obs_dim, dataset.act_dim).eval()
    peer_dt.copy_peer_into_ours(peer, ours)
    peer.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(batch)[batch["mask"]], peer(batch)[batch["mask"]], atol=2e-6, rtol=1e-5)
    torch.manual_seed(cfg.train.seed)
    initial = peer_dt.PeerDT(dataset.obs_dim, dataset.act_dim, cfg).hf.encoder.wpe.weight[0].clone()
    with_vector, _ = peer_dt.train_peer(cfg, dataset, obs_norm, steps=5)
    assert not torch.equal(with_vector.hf.encoder.wpe.weight[0], initial)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_ours_started_from_the_peers_init_trains_as_the_peer_does(tiny_minari, dropout):
    """ours-peer-init against peer-no-pos: the same initial weights, batches, loop and dropout stream, so any
    difference after training is the implementation's. It is float rounding, with and without dropout (our
    dropout masks are drawn in the same order and shapes as GPT-2's)."""
    cfg, dataset, obs_norm = setup(tiny_minari[0], [f"model.dropout={dropout}"])
    batch = WindowSampler(dataset, obs_norm, 10, 32, seed=1).sample()
    peer, _ = peer_dt.train_peer(cfg, dataset, obs_norm, steps=5, position_vector=False)
    ours, _ = peer_dt.train_peer(cfg, dataset, obs_norm, steps=5, position_vector=False, into_ours=True)
    assert type(ours).__name__ == "DecisionModel"
    peer.eval(), ours.eval()
    with torch.no_grad():
        mine, theirs = ours(batch)[batch["mask"]], peer(batch)[batch["mask"]]
    torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)
    untrained, _ = peer_dt.train_peer(cfg, dataset, obs_norm, steps=0, position_vector=False)
    with torch.no_grad():
        assert (untrained.eval()(batch)[batch["mask"]] - theirs).abs().max() > 1e-3  # training moved it


def test_ours_from_the_peers_init_needs_the_peer_without_its_position_vector(tiny_minari):
    cfg, dataset, obs_norm = setup(tiny_minari[0])
    with pytest.raises(ValueError, match="position-0 embedding"):
        peer_dt.train_peer(cfg, dataset, obs_norm, steps=1, position_vector=True, into_ours=True)


def test_ours_trains_in_float32_like_the_peer_even_where_bf16_is_native(monkeypatch):
    # The peer's loop has no autocast; with the default train.amp=auto ours would train in bf16 on a CPU with
    # bf16 units, and the score comparison would mix precisions.
    monkeypatch.setattr("decision_minrnn.device.cpu_has_native_bf16", lambda: True)
    cfg = load_config(None, ["data.source=[bench/hopper/medium-v0]", *peer_dt.DT_RECIPE])
    assert resolve_amp(cfg.train.amp, torch.device("cpu")) == "none"
    assert resolve_amp(load_config(None).train.amp, torch.device("cpu")) == "bf16"  # what it guards against
