import pytest
import torch
from helpers import random_batch

from decision_minrnn.config import ModelConfig
from decision_minrnn.data import ObsNormalizer, WindowSampler, load_source
from decision_minrnn.models import DecisionModel
from decision_minrnn.models.step import flatten_state
from decision_minrnn.update import masked_mse

RECURRENT = ["mingru", "minlstm", "gru", "lstm"]
LAYOUTS = ["interleaved", "fused"]


def make_model(backbone, layout, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return (
        DecisionModel(11, 3, ModelConfig(backbone, embed_dim=32, n_layers=2, dropout=0.1, token_layout=layout, **kw))
        .to(dtype)
        .eval()
    )


@pytest.mark.parametrize("backbone", RECURRENT)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_recurrent_step_equals_forward_over_history(backbone, layout):
    model = make_model(backbone, layout, conv_kernel=4 if backbone == "mingru" else 0)
    batch = random_batch()
    full = model(batch)
    B, K = batch["timesteps"].shape
    state, actions = None, []
    for t in range(K):
        # garbage where the episode starts: the step must not read a previous action there
        prev = torch.full_like(batch["act"][:, 0], 7.0) if t == 0 else batch["act"][:, t - 1]
        first = torch.full((B,), t == 0)
        a, state = model.step(batch["obs"][:, t], batch["rtg"][:, t], batch["timesteps"][:, t], prev, first, state)
        actions.append(a)
    torch.testing.assert_close(torch.stack(actions, 1), full, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backbone", RECURRENT)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_envs_at_their_first_step_share_the_step_with_envs_further_on(backbone, layout):
    """One call for envs that start an episode and envs in the middle of one (Policy.predict's restarts) gives
    each the actions of its own history: the first-step mask, not a branch, keeps them apart."""
    model = make_model(backbone, layout)
    batch = random_batch()
    full = model(batch)
    B, K = batch["timesteps"].shape
    restart = 4  # env 0 starts a new episode at step 4, whose history is steps 4.. of the batch from t = 0
    fresh = {k: v[:1, restart:].clone() for k, v in batch.items()}
    fresh["timesteps"] = fresh["timesteps"] - fresh["timesteps"][:, :1]
    if "prev_act" in fresh:
        fresh["prev_act"][:, 0] = 0.0
    expected = model(fresh)
    state = None
    for t in range(K):
        first = torch.tensor([t in (0, restart)] + [t == 0] * (B - 1))
        prev = batch["act"][:, t - 1] if t else torch.zeros_like(batch["act"][:, 0])
        ts = batch["timesteps"][:, t].clone()
        ts[0] = fresh["timesteps"][0, t - restart] if t >= restart else ts[0]
        if t == restart:
            state = model.merge_state(state, model.initial_state(B), ~first)
        a, state = model.step(batch["obs"][:, t], batch["rtg"][:, t], ts, prev, first, state)
        if t >= restart:
            torch.testing.assert_close(a[0], expected[0, t - restart], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(a[1:], full[1:, t], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backbone", RECURRENT)
def test_last_only_is_the_last_output_with_the_same_state(backbone):
    # act() asks the backbone for the last token's output only (the last block's MLP skips the others).
    model = make_model(backbone, "interleaved", conv_kernel=4 if backbone == "mingru" else 0)
    x = torch.randn(5, 3, 32, dtype=torch.float64)
    y_all, s_all = model.backbone(x, None)
    y_last, s_last = model.backbone(x, None, last_only=True)
    assert y_last.shape == (5, 1, 32)
    torch.testing.assert_close(y_last, y_all[:, -1:], rtol=1e-12, atol=1e-12)
    for a, b in zip(flatten_state(s_all), flatten_state(s_last)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backbone", RECURRENT + ["transformer"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_action_does_not_see_its_own_target_or_the_future(backbone, layout):
    model = make_model(backbone, layout)
    batch = random_batch()
    changed = {k: v.clone() for k, v in batch.items()}
    changed["act"][:, 4:] += 1.0  # a_4 is the target at step 4: predictions up to 4 must not move
    changed["prev_act"][:, 5:] += 1.0  # the same change, where the fused layout reads it (a_4 is step 5's prev)
    changed["obs"][:, 5:] += 1.0
    a, b = model(batch), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=0)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_the_fused_layout_refuses_a_batch_without_prev_act():
    batch = random_batch()
    del batch["prev_act"]  # it is never reconstructed from act inside a window, which would zero a_{-1} wrongly
    with pytest.raises(ValueError, match="prev_act"):
        make_model("mingru", "fused")(batch)
    assert make_model("mingru", "interleaved")(batch).shape == batch["act"].shape


def test_transformer_has_no_recurrent_step():
    model = make_model("transformer", "interleaved")
    assert not model.recurrent
    with pytest.raises(ValueError, match="window mode"):
        zeros = torch.zeros(1, 3).double()
        model.step(torch.zeros(1, 11).double(), zeros[:, :1], torch.zeros(1, dtype=torch.long), zeros, None, None)


def test_masked_mse_ignores_padding_and_divides_by_real_positions():
    pred = torch.zeros(1, 4, 2)
    target = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False, False]])
    assert masked_mse(pred, target, mask).item() == pytest.approx((1 + 1 + 9 + 9) / 4)


@pytest.mark.parametrize("backbone", ["mingru", "minlstm", "transformer", "gru", "lstm"])
def test_every_backbone_learns_the_tiny_dataset(tiny_minari, backbone):
    dataset = load_source(tiny_minari[0])
    sampler = WindowSampler(dataset, ObsNormalizer.fit(dataset.episodes), context_len=10, batch_size=16, seed=0)
    torch.manual_seed(0)
    layout = "fused" if backbone == "gru" else "interleaved"
    model = DecisionModel(11, 3, ModelConfig(backbone, embed_dim=32, n_layers=2, dropout=0.0, token_layout=layout))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(100):
        batch = sampler.sample()
        loss = masked_mse(model(batch), batch["act"], batch["mask"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.3 * first, (first, last)
