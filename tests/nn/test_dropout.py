"""nn/dropout.py: the fast mask is Bernoulli(q) with q = 1 - p to 2^-17, independent across elements, calls
and vmapped seeds, deterministic from torch's generator state, and its dropout keeps the expectation."""

import math

import pytest
import torch
from torch.func import vmap

from decision_minrnn.nn.dropout import Dropout, dropout, fast_keep_mask, keep_probability
from decision_minrnn.nn.scan import LONG_SEQUENCE

N = 1 << 20  # 4 sd of a Bernoulli(0.9) mean over N elements: 1.2e-3


def within(observed, expected, n, sds=5.0):
    """observed frequency of an event with probability `expected` over n independent trials."""
    return abs(observed - expected) <= sds * math.sqrt(expected * (1 - expected) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.01])
def test_keep_probability_is_one_minus_p_to_the_lane_resolution(p):
    assert abs(keep_probability(p) - (1 - p)) <= 2**-17


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_every_lane_of_a_word_keeps_with_probability_q(p):
    torch.manual_seed(0)
    keep = fast_keep_mask((N,), p).float()
    q = keep_probability(p)
    assert within(keep.mean().item(), q, N)
    # The four 16-bit lanes of one 64-bit word: a lane with a stuck bit (as random_()'s top bit would be)
    # would keep with another probability.
    for lane in range(4):
        assert within(keep[lane::4].mean().item(), q, N // 4), lane


def test_masks_are_pairwise_independent_across_elements_calls_and_shapes():
    torch.manual_seed(1)
    p, q = 0.1, keep_probability(0.1)
    a = fast_keep_mask((N,), p)
    b = fast_keep_mask((N,), p)  # the next layer, or the next step
    c = fast_keep_mask((64, 1 << 14), p).flatten()  # another shape
    pairs = {
        "neighbours": (a[:-1], a[1:]),
        "lanes 0 and 3 of a word": (a[0::4], a[3::4]),
        "next word": (a[:-4], a[4:]),
        "two calls": (a, b),
        "another shape": (b, c),
    }
    for name, (x, y) in pairs.items():
        both = (x & y).float().mean().item()
        assert within(both, q * q, x.numel()), name
        dropped_both = (~x & ~y).float().mean().item()
        assert within(dropped_both, (1 - q) ** 2, x.numel()), name


def test_dropout_keeps_the_expectation_and_zeroes_the_rest():
    torch.manual_seed(2)
    x = torch.full((N,), 3.0)
    y = dropout(x, 0.1, training=True, impl="fast")
    kept = y != 0
    assert torch.allclose(y[kept], torch.tensor(3.0 / keep_probability(0.1)))
    assert abs(y.mean().item() - 3.0) < 5 * 3.0 * math.sqrt(0.1 / 0.9 / N) + 1e-6


def test_the_gradient_is_the_scaled_mask():
    torch.manual_seed(3)
    x = torch.randn(64, 60, 128, requires_grad=True)
    y = dropout(x, 0.1, training=True, impl="fast")
    y.sum().backward()
    expected = (y.detach() != 0).float() / keep_probability(0.1)
    assert torch.equal(x.grad, expected)


def test_masks_follow_the_generator_state():
    torch.manual_seed(4)
    state = torch.get_rng_state()
    first = fast_keep_mask((1000, 3), 0.1)
    second = fast_keep_mask((1000, 3), 0.1)
    torch.set_rng_state(state)  # what a resumed run does with its checkpoint's rng.torch
    assert torch.equal(fast_keep_mask((1000, 3), 0.1), first)
    assert torch.equal(fast_keep_mask((1000, 3), 0.1), second)
    assert not torch.equal(first, second)


def test_vmapped_seeds_draw_different_masks():
    # update.SeedGroup vmaps the forward with randomness="different": each seed must get its own masks.
    torch.manual_seed(5)
    x = torch.ones(4, 256, 64)
    y = vmap(lambda t: dropout(t, 0.5, training=True, impl="fast"), randomness="different")(x)
    masks = (y != 0).flatten(1)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.equal(masks[i], masks[j])
    assert within(masks.float().mean().item(), keep_probability(0.5), masks.numel())


@pytest.mark.parametrize("impl", ["torch", "fast"])
def test_eval_mode_and_zero_rate_are_the_identity(impl):
    x = torch.randn(8, 5)
    module = Dropout(0.1, impl).eval()
    assert module(x) is x
    assert Dropout(0.0, impl).train()(x) is x


def test_a_bad_impl_or_rate_is_refused():
    with pytest.raises(ValueError, match="unknown dropout impl 'fastest'"):
        Dropout(0.1, "fastest")
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        Dropout(1.0, "fast")


@pytest.mark.parametrize("backbone", ["mingru", "minlstm", "transformer"])
def test_every_backbone_uses_the_chosen_impl(backbone):
    from decision_minrnn.config import ModelConfig
    from decision_minrnn.models import DecisionModel

    model = DecisionModel(11, 3, ModelConfig(backbone, embed_dim=16, n_layers=2, dropout_impl="fast"))
    dropouts = [m for m in model.modules() if isinstance(m, (Dropout, torch.nn.Dropout))]
    assert dropouts and all(isinstance(m, Dropout) and m.impl == "fast" for m in dropouts)
    if backbone == "transformer":
        assert all(block.attn.dropout_impl == "fast" for block in model.backbone.blocks)


def test_the_transformers_fast_attention_path_is_sdpa_without_the_mask(monkeypatch):
    # With the fast impl, training attention runs the explicit math path so that its dropout uses our mask;
    # with that mask replaced by the identity it must compute what SDPA computes.
    from decision_minrnn.models import backbones

    monkeypatch.setattr(backbones, "functional_dropout", lambda x, p, training, impl: x)
    torch.manual_seed(6)
    attn = backbones.CausalSelfAttention(16, 2, 0.1, "fast")
    x = torch.randn(3, 7, 16)
    attn.train()
    attn.resid_dropout.eval()
    explicit = attn(x)
    attn.eval()
    assert torch.allclose(explicit, attn(x), atol=1e-6)


LONG = LONG_SEQUENCE + 8  # a sequence long enough for the bool masks


@pytest.mark.parametrize("shape", [(4, LONG, 32), (2, 1, LONG, LONG), (64, 60, 32)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_the_torch_impl_on_cpu_is_torchs_dropout_number_for_number(dtype, shape):
    """Same generator draws, same scale, same values and gradient as nn.functional.dropout on CPU, over a long
    sequence (bool masks; attention's (B, H, L, L) too) and a short one (torch's own dropout)."""
    x = torch.randn(*shape, dtype=dtype)
    out = []
    for fn in (torch.nn.functional.dropout, dropout):
        torch.manual_seed(7)
        xi = x.clone().requires_grad_(True)
        y = fn(xi, 0.1, True)
        (y * 2).sum().backward()
        out.append((y, xi.grad))
    assert torch.equal(out[0][0], out[1][0])
    assert torch.equal(out[0][1], out[1][1])


@pytest.mark.parametrize("impl", ["torch", "fast"])
def test_over_a_long_sequence_the_backward_keeps_a_bool_mask_not_a_float_one(impl):
    def kept(shape):
        saved = []
        x = torch.randn(*shape, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            dropout(x, 0.1, training=True, impl=impl)
        return [t.dtype for t in saved if t.numel() > 1]  # (the torch impl's scale is a 0-dim tensor, also kept)

    assert kept((2, LONG, 16)) == [torch.bool]
    assert kept((2, LONG_SEQUENCE, 16)) == [torch.float32]  # DT's windows: the float mask, as before


def test_the_fast_impl_gives_the_same_numbers_with_either_mask():
    x = torch.randn(2, LONG, 16)
    torch.manual_seed(9)
    bool_kept = dropout(x, 0.1, training=True, impl="fast")
    torch.manual_seed(9)
    float_kept = x * (fast_keep_mask(x.shape, 0.1).float() * (1.0 / keep_probability(0.1)))
    assert torch.equal(bool_kept, float_kept)


def test_vmapped_seeds_draw_different_masks_with_the_torch_impl():
    torch.manual_seed(8)
    y = vmap(lambda t: dropout(t, 0.5, training=True), randomness="different")(torch.ones(4, 2, LONG, 64))
    masks = (y != 0).flatten(1)
    assert all(not torch.equal(masks[i], masks[j]) for i in range(4) for j in range(i + 1, 4))
    assert within(masks.float().mean().item(), 0.5, masks.numel())
