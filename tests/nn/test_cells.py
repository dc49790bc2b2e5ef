import pytest
import torch
from helpers import DEVICES

from decision_minrnn.nn import MinGRU, MinLSTM, MinRNNStack, g, log_g

CELLS = {"mingru": MinGRU, "minlstm": MinLSTM}
SCANS = ["sequential", "chunked", "log"]


def make(kind, dim=8, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    if kind == "stack":
        module = MinRNNStack(dim, depth=3, cell=kw.pop("cell", "mingru"), conv_kernel=kw.pop("conv_kernel", 0), **kw)
    else:
        module = CELLS[kind](dim, **kw)
    return module.to(dtype).eval()


def step_through(module, x, state=None):
    ys = []
    for t in range(x.shape[1]):
        y, state = module.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


def final_h(state):
    return state if torch.is_tensor(state) else torch.cat([s.h for s in state], -1)


def test_g_and_log_g_agree_and_are_continuous():
    x = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    torch.testing.assert_close(torch.log(g(x)), log_g(x))
    assert (g(x) > 0).all()
    assert abs(g(torch.tensor(0.0)) - 0.5) < 1e-12 and abs(g(torch.tensor(-1e-9)) - 0.5) < 1e-8


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
@pytest.mark.parametrize("scan", SCANS)
@pytest.mark.parametrize("expansion", [1.0, 1.5])
def test_forward_equals_step_loop_float64(kind, scan, expansion, device):
    cell = make(kind, expansion=expansion, scan=scan).to(device)
    x = torch.randn(3, 40, 8, dtype=torch.float64, device=device)
    h0 = torch.rand(3, cell.hidden_dim, dtype=torch.float64, device=device)
    for init in (None, h0):
        y, h_T = cell(x, init)
        y_loop, h_loop = step_through(cell, x, init)
        torch.testing.assert_close(y, y_loop, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(h_T, h_loop, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
@pytest.mark.parametrize("scan", SCANS)
def test_forward_equals_step_loop_float32_long(kind, scan):
    cell = make(kind, dim=16, dtype=torch.float32, scan=scan)
    x = torch.randn(2, 1000, 16)
    y, _ = cell(x)
    y_loop, _ = step_through(cell, x)
    rel = (y - y_loop).abs().max() / y_loop.abs().max()
    assert rel < 1e-4


@pytest.mark.parametrize(
    "kind,kw",
    [
        ("mingru", {}),
        ("minlstm", {"forget_bias": 1.0}),
        ("stack", {}),
        ("stack", {"cell": "minlstm", "conv_kernel": 4}),
    ],
)
def test_two_chunks_with_carried_state_equal_one_forward(kind, kw):
    module = make(kind, **kw)
    x = torch.randn(2, 30, 8, dtype=torch.float64)
    y_full, s_full = module(x)
    y1, s1 = module(x[:, :13])
    y2, s2 = module(x[:, 13:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_full, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(final_h(s2), final_h(s_full), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
@pytest.mark.parametrize("conv_kernel", [0, 4])
@pytest.mark.parametrize("scan", SCANS)
def test_stack_forward_equals_step_loop(cell, conv_kernel, scan):
    stack = make("stack", cell=cell, conv_kernel=conv_kernel, scan=scan, expansion=1.5)
    x = torch.randn(2, 25, 8, dtype=torch.float64)
    y, state = stack(x)
    y_loop, state_loop = step_through(stack, x)
    torch.testing.assert_close(y, y_loop, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(final_h(state), final_h(state_loop), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["mingru", "minlstm", "stack"])
def test_causality(kind):
    module = make(kind)
    x = torch.randn(2, 20, 8, dtype=torch.float64)
    x_changed = x.clone()
    x_changed[:, 12:] += torch.randn_like(x_changed[:, 12:])
    y, _ = module(x)
    y_changed, _ = module(x_changed)
    torch.testing.assert_close(y[:, :12], y_changed[:, :12], rtol=0, atol=0)
    assert not torch.allclose(y[:, 12:], y_changed[:, 12:])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
@pytest.mark.parametrize("scan", SCANS)
def test_gradients_finite_at_T4096(kind, scan, device):
    cell = make(kind, dim=8, dtype=torch.float32, scan=scan).to(device)
    x = torch.randn(2, 4096, 8, requires_grad=True, device=device)
    h0 = torch.rand(2, 8, requires_grad=True, device=device)
    y, h_T = cell(x, h0)
    (y.square().mean() + h_T.sum()).backward()
    for grad in [x.grad, h0.grad] + [p.grad for p in cell.parameters()]:
        assert torch.isfinite(grad).all()
    assert x.grad[:, 0].abs().sum() > 0  # the first input still influences the loss


@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
def test_h0_enters_in_h_space_not_through_g(kind):
    """With gates forced to 'keep everything' (a -> 1), h_t must stay h0, not g(h0)."""
    cell = make(kind, dim=4)
    with torch.no_grad():
        cell.to_gates.weight.zero_()
        if kind == "mingru":  # k = -40 -> z ~ 0 -> a = 1 - z ~ 1
            cell.to_gates.bias = torch.nn.Parameter(torch.cat([torch.full((4,), -40.0), torch.zeros(4)]).double())
        else:  # forget pre-activation 40, input -40 -> f' ~ 1
            cell.to_gates.bias = torch.nn.Parameter(
                torch.cat([torch.full((4,), 40.0), torch.full((4,), -40.0), torch.zeros(4)]).double()
            )
    h0 = torch.tensor([[-2.0, 0.3, 1.7, -0.1]], dtype=torch.float64)
    x = torch.randn(1, 5, 4, dtype=torch.float64)
    y, h_T = cell(x, h0)
    torch.testing.assert_close(h_T, h0, rtol=1e-8, atol=1e-8)
    _, h_step = cell.step(x[:, 0], h0)
    torch.testing.assert_close(h_step, h0, rtol=1e-8, atol=1e-8)


def test_minlstm_forget_bias_initialized():
    cell = MinLSTM(6, forget_bias=2.0)
    assert torch.all(cell.to_gates.bias[:6] == 2.0) and torch.all(cell.to_gates.bias[6:] == 0.0)


def test_expansion_needs_projection():
    with pytest.raises(ValueError):
        MinGRU(8, expansion=2.0, proj_out=False)
    assert MinGRU(8, expansion=2.0)(torch.randn(1, 3, 8))[0].shape == (1, 3, 8)


@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
@pytest.mark.parametrize("scan", SCANS)
def test_time_chunked_forward_equals_one_pass(kind, scan):
    chunked = make(kind, scan=scan, time_chunk=7)
    whole = make(kind, scan=scan, time_chunk=None)
    x = torch.randn(2, 30, 8, dtype=torch.float64, requires_grad=True)
    h0 = torch.rand(2, 8, dtype=torch.float64)
    (y1, h1), (y2, h2) = chunked(x, h0), whole(x, h0)
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h1, h2, rtol=1e-12, atol=1e-12)
    g1 = torch.autograd.grad(y1.square().sum(), x)[0]
    g2 = torch.autograd.grad(y2.square().sum(), x)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
def test_the_cuda_scan_is_accurate_at_T5000_with_saturated_gates(kind):
    """What scan="auto" runs on CUDA, forced here on CPU (and without CPU time chunking, which CUDA does not
    use): float32 within 1e-4 of float64, as max |error| / max |output|, at T=5000 with gate pre-activations
    of about 1e3. The log-space scan, CUDA's earlier choice, misses this by two orders of magnitude."""
    from decision_minrnn.nn.scan import AUTO_METHOD

    torch.manual_seed(0)
    ref_cell = make(kind, dim=64, scan="sequential", time_chunk=None)
    x = torch.randn(2, 5000, 64, dtype=torch.float64) * 375.0
    with torch.no_grad():
        assert ref_cell.to_gates(x).abs().max() > 500  # saturated
        ref, _ = ref_cell(x)

        def error(scan):
            cell = make(kind, dim=64, dtype=torch.float32, scan=scan, time_chunk=None)
            cell.load_state_dict({k: v.float() for k, v in ref_cell.state_dict().items()})
            y, _ = cell(x.float())
            return ((y.double() - ref).abs().max() / ref.abs().max()).item()

        assert error(AUTO_METHOD["cuda"]) <= 1e-4
        assert error("log") > 1e-3  # why the choice changed


def test_auto_picks_the_chunked_scan_on_cpu_only_for_a_long_sequence_over_few_lanes():
    from decision_minrnn.nn.scan import FEW_LANES, LONG_SEQUENCE, resolve_method

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_method("auto", cpu, FEW_LANES, LONG_SEQUENCE + 1) == "chunked"  # 2 episodes x 128 of width
    assert resolve_method("auto", cpu, FEW_LANES + 1, 1000) == "sequential"  # a training batch's lanes
    assert resolve_method("auto", cpu, 2, LONG_SEQUENCE) == "sequential"  # K = 20's windows, an acting step
    assert resolve_method("auto", cpu) == "sequential" and resolve_method("auto", cuda, 2, 5000) == "chunked"
    assert resolve_method("log", cpu, 2, 5000) == "log"  # a method named is the method run


@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
def test_a_few_lane_long_sequence_runs_the_chunked_scan_in_one_pass_and_equals_the_sequential_one(kind, monkeypatch):
    """scan="auto" on 2 x 8 lanes, T = 300: one pass of the chunked scan (no time chunks), the sequential scan's
    outputs, final state and gradients to float64 rounding; 33 x 8 lanes keep the sequential scan in time chunks."""
    from decision_minrnn.nn import scan as scans

    auto, sequential = make(kind, time_chunk=128), make(kind, scan="sequential", time_chunk=128)
    calls, original = [], scans.scan_chunked

    def spy(*args, **kwargs):
        calls.append("chunked")
        return original(*args, **kwargs)

    monkeypatch.setattr(scans, "scan_chunked", spy)
    x = torch.randn(2, 300, 8, dtype=torch.float64, requires_grad=True)
    h0 = torch.rand(2, 8, dtype=torch.float64)
    (y1, h1), (y2, h2) = auto(x, h0), sequential(x, h0)
    assert calls == ["chunked"]  # one pass over the 300 steps
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h1, h2, rtol=1e-12, atol=1e-12)
    g1 = torch.autograd.grad(y1.square().sum(), x)[0]
    g2 = torch.autograd.grad(y2.square().sum(), x)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-10)
    calls.clear()
    auto(torch.randn(32, 300, 8, dtype=torch.float64))  # 256 lanes: few enough
    assert calls == ["chunked"]
    calls.clear()
    auto(torch.randn(33, 300, 8, dtype=torch.float64))
    assert calls == []
