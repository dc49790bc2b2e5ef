"""Elementwise gate math compiled by torch.compile (Inductor), with an eager fallback.

Why: on CPU a minRNN layer's time is the input projection (a matmul) plus the elementwise gate math
(sigmoid, g, products) and its backward. Eagerly, every one of those ops streams the whole (B, T, H)
tensor through memory; Inductor fuses them into one loop per pass. scripts/bench_scan.py measures the
effect (docs/speed.md section 1). The scans themselves stay outside the compiled region
(``torch.compiler.disable`` in scan.py): a time loop would be unrolled T times.

Inductor on CPU needs a working C++ compiler. Where compiling fails, the first failure is reported once
as a warning and the eager function is used from then on: same numbers, slower.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from ..errors import first_line
from .scan import opaque_to_compile

_compiled: dict[Callable, Callable] = {}
_unavailable: set[Callable] = set()


def call_compiled(fn: Callable, *args):
    """fn(*args) through torch.compile(fn) (one compiled wrapper per function), eager if compiling fails."""
    if fn in _unavailable:
        return fn(*args)
    compiled = _compiled.get(fn)
    if compiled is None:
        opaque_to_compile()
        # dynamic=None: the first shape is compiled static; a second shape (the last, shorter time chunk,
        # another batch size) triggers one dynamic-shape recompile instead of one per shape.
        compiled = _compiled[fn] = torch.compile(fn, dynamic=None)
    try:
        return compiled(*args)
    except Exception as exc:  # noqa: BLE001 - any compiler failure: Inductor raises many kinds
        _unavailable.add(fn)
        warnings.warn(
            f"compile_gates: torch.compile of {fn.__name__} failed ({first_line(exc, 200)}); "
            "using the eager gate math (same results, slower)",
            RuntimeWarning,
            stacklevel=2,
        )
        return fn(*args)
