"""compile_gates=True runs the same math as the eager gates (values and gradients), and falls back to eager
with one warning when torch.compile cannot be used."""

import shutil

import pytest
import torch

from decision_minrnn.nn import MinGRU, MinLSTM, MinRNNStack
from decision_minrnn.nn import compiled as compiled_module

CELLS = {"mingru": MinGRU, "minlstm": MinLSTM}


def forward_and_grads(module, x):
    x = x.clone().requires_grad_(True)
    y, h = module(x)
    (y.square().sum() + h.sum()).backward()
    grads = [x.grad] + [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    return y.detach(), h.detach(), grads


def needs_compiler():
    """Inductor on CPU compiles C++: without a compiler the fused path cannot exist, so skip (with the reason)
    rather than compare eager with eager."""
    if not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        pytest.skip("no C++ compiler: torch.compile cannot run on CPU here")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
@pytest.mark.parametrize("scan", ["sequential", "log"])
def test_compiled_gates_match_eager(kind, scan):
    needs_compiler()
    torch.manual_seed(0)
    # time_chunk=16 with T=40: two chunk shapes (16 and 8), so the recompile for a second shape is covered.
    eager = CELLS[kind](8, scan=scan, time_chunk=16)
    fused = CELLS[kind](8, scan=scan, time_chunk=16, compile_gates=True)
    fused.load_state_dict(eager.state_dict())
    x = torch.randn(3, 40, 8)
    y_e, h_e, g_e = forward_and_grads(eager, x)
    y_c, h_c, g_c = forward_and_grads(fused, x)
    torch.testing.assert_close(y_c, y_e, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_c, h_e, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_c, g_e):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # The comparison means something only if the fused path ran: a silent fallback would compare eager with eager.
    assert not compiled_module._unavailable, "torch.compile fell back to eager"


def test_stack_passes_compile_gates_to_every_cell():
    stack = MinRNNStack(8, depth=2, cell="minlstm", compile_gates=True)
    assert all(block.cell.compile_gates for block in stack.blocks)


def test_failed_compile_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler\nmore detail")

        return run

    monkeypatch.setattr(compiled_module, "_compiled", {})
    monkeypatch.setattr(compiled_module, "_unavailable", set())
    monkeypatch.setattr(compiled_module.torch, "compile", broken_compile)
    torch.manual_seed(0)
    eager = MinGRU(8)
    fused = MinGRU(8, compile_gates=True)
    fused.load_state_dict(eager.state_dict())
    x = torch.randn(2, 10, 8)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        y = fused(x)[0]
    torch.testing.assert_close(y, eager(x)[0])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call uses eager silently
        fused(x)
