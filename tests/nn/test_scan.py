import pytest
import torch
from helpers import DEVICES

from decision_minrnn.nn import linear_scan, scan_chunked, scan_log, scan_sequential


def loop_scan(a, b, h0):
    h, out = h0, []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, 1)


def random_coeffs(B=3, T=37, H=5, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(B, T, H, generator=gen, dtype=dtype) * 0.98 + 0.01
    b = torch.rand(B, T, H, generator=gen, dtype=dtype) + 0.01
    h0 = torch.randn(B, H, generator=gen, dtype=dtype)
    return a, b, h0


SCANS = {
    "log": lambda a, b, h0: scan_log(a.log(), b.log(), h0),
    "sequential": scan_sequential,
    "chunked": scan_chunked,
    "chunked_7": lambda a, b, h0: scan_chunked(a, b, h0, chunk=7),
    "chunked_1": lambda a, b, h0: scan_chunked(a, b, h0, chunk=1),
}


@pytest.mark.parametrize("name", SCANS)
@pytest.mark.parametrize("with_h0", [True, False])
def test_scan_matches_loop_float64(name, with_h0):
    a, b, h0 = random_coeffs()
    h0 = h0 if with_h0 else None
    expected = loop_scan(a, b, h0 if h0 is not None else torch.zeros_like(b[:, 0]))
    torch.testing.assert_close(SCANS[name](a, b, h0), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["sequential", "chunked_7"])
def test_scan_gradients_match_autograd_of_loop(name):
    a, b, h0 = random_coeffs(T=12)
    for t in (a, b, h0):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(SCANS[name], (a, b, h0))
    weights = torch.randn_like(b)
    grads = torch.autograd.grad((SCANS[name](a, b, h0) * weights).sum(), (a, b, h0))
    ref = torch.autograd.grad((loop_scan(a, b, h0) * weights).sum(), (a, b, h0))
    for got, want in zip(grads, ref):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["auto", "log", "sequential", "chunked"])
def test_linear_scan_keeps_float32_under_bf16_inputs(method, device):
    a, b, h0 = (t.to(device) for t in random_coeffs(dtype=torch.float32))
    out = linear_scan(a.bfloat16(), b.bfloat16(), h0.bfloat16(), method=method)
    assert out.dtype == torch.float32


def test_unknown_method_is_an_error():
    a, b, h0 = random_coeffs()
    with pytest.raises(ValueError, match="unknown scan method"):
        linear_scan(a, b, h0, method="magic")
