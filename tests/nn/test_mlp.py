"""nn/mlp.py: the GELU MLP that recomputes GELU in the backward gives autograd's numbers (outputs and every
gradient; eager, float64, autocast, vmap) and keeps one (..., hidden) tensor for the backward instead of two."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from decision_minrnn.nn.mlp import GeluMLP
from decision_minrnn.nn.scan import LONG_SEQUENCE

T = LONG_SEQUENCE + 2  # long enough for the Function (the rule: training a sequence longer than LONG_SEQUENCE)


def reference(mlp: GeluMLP, x: torch.Tensor) -> torch.Tensor:
    """The plain nn.Sequential forward: what autograd saves and differentiates without the Function."""
    return nn.Sequential.forward(mlp, x)


def grads(fn, mlp, x):
    mlp.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    y = fn(mlp, x)
    (y * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)).sum().backward()
    return y.detach(), x.grad, [p.grad.clone() for p in mlp.parameters()]


def assert_same(a, b, **tol):
    y_a, gx_a, gp_a = a
    y_b, gx_b, gp_b = b
    torch.testing.assert_close(y_a, y_b, **tol)
    torch.testing.assert_close(gx_a, gx_b, **tol)
    for g_a, g_b in zip(gp_a, gp_b, strict=True):
        torch.testing.assert_close(g_a, g_b, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outputs_and_gradients_equal_autograds(dtype):
    torch.manual_seed(0)
    mlp = GeluMLP(8, 32).to(dtype).train()
    x = torch.randn(3, T, 8, dtype=dtype)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    assert_same(grads(GeluMLP.forward, mlp, x), grads(reference, mlp, x), **tol)


def test_equal_under_autocast_and_the_parameter_gradients_stay_float32():
    torch.manual_seed(1)
    mlp = GeluMLP(8, 32).train()
    x = torch.randn(4, T, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, ref = grads(GeluMLP.forward, mlp, x), grads(reference, mlp, x)
    assert ours[0].dtype == torch.bfloat16
    assert all(g.dtype == torch.float32 for g in ours[2])
    assert_same(ours, ref, rtol=0, atol=0)


def test_equal_under_vmap_over_stacked_members():
    """The seed group's use: one vmapped forward over stacked parameters, one backward."""
    torch.manual_seed(2)
    members = [GeluMLP(8, 16).train() for _ in range(3)]
    x = torch.randn(3, 2, T, 8)

    def run(forward):
        params, buffers = stack_module_state(members)
        params = {k: v.detach().requires_grad_(True) for k, v in params.items()}

        def one(p, b, xi):
            return functional_call(members[0], (p, b), (xi,))

        members[0].forward = forward.__get__(members[0])
        y = vmap(one)(params, buffers, x)
        del members[0].forward
        (y**2).sum().backward()
        return y.detach(), [params[k].grad for k in sorted(params)]

    y_ours, g_ours = run(GeluMLP.forward)
    y_ref, g_ref = run(lambda self, xi: nn.Sequential.forward(self, xi))
    torch.testing.assert_close(y_ours, y_ref)
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def saved_hidden_tensors(fn, mlp, x) -> int:
    """How many (..., hidden)-shaped tensors autograd keeps for the backward of fn(mlp, x)."""
    hidden = mlp[0].out_features
    seen = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: seen.append(t) or t, lambda t: t):
        fn(mlp, x.requires_grad_(True)).sum()
    rows = x.numel() // x.shape[-1]
    # by storage: Linear keeps its input as a flattened (rows, hidden) view
    return len({t.data_ptr() for t in seen if t.shape[-1] == hidden and t.numel() == rows * hidden})


def test_keeps_one_hidden_tensor_where_autograd_keeps_two():
    mlp = GeluMLP(8, 32).train()
    x = torch.randn(2, T, 8)
    assert saved_hidden_tensors(reference, mlp, x) == 2
    assert saved_hidden_tensors(GeluMLP.forward, mlp, x) == 1


def test_short_sequences_eval_and_no_grad_run_the_plain_modules():
    torch.manual_seed(3)
    mlp = GeluMLP(8, 32)
    x = torch.randn(2, T, 8)
    with torch.no_grad():
        train_out = mlp.train()(x)
    torch.testing.assert_close(mlp.eval()(x), train_out)
    assert saved_hidden_tensors(GeluMLP.forward, mlp.eval(), x) == 2  # eval: the plain path
    # DT's windows (K = 20: 60 tokens) and anything up to LONG_SEQUENCE: no recomputation to pay for
    assert saved_hidden_tensors(GeluMLP.forward, mlp.train(), torch.randn(2, LONG_SEQUENCE, 8)) == 2


def test_parameter_names_are_the_sequentials():
    """Checkpoints written before the Function load unchanged."""
    assert [n for n, _ in GeluMLP(4, 8).named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
