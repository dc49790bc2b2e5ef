"""What the two memory savers of a training step cost in time: the MLP's GELU recomputed in the backward
(nn/mlp.py) and dropout's bool masks (nn/dropout.py), each switched on and off in one model's step round-robin
in one process, so the ratios compare like with like (docs/speed.md section 13b).

    python scripts/bench_memory_savers.py                 # prints JSON
    python scripts/bench_memory_savers.py --repeats 3     # a smoke run

The package applies both to sequences longer than LONG_SEQUENCE tokens only (whole episodes, long K); here
each module's length rule is moved so that a saver runs at every length or at none. Variants of the same
training step (forward, masked MSE, backward, AdamW; DT-size model, Hopper's dims):
* plain: neither (the MLP saves GELU's input and output, dropout a float mask);
* masks: bool dropout masks at every length, the plain MLP;
* recompute: the GELU Function at every length, float masks;
* package: the package as it runs (both above LONG_SEQUENCE tokens, neither below).
Reported: milliseconds per step of the plain variant and every variant's median time over it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_context  # noqa: E402

from decision_minrnn.benchmarks import machine_info, time_interleaved  # noqa: E402
from decision_minrnn.nn import dropout as dropout_module  # noqa: E402
from decision_minrnn.nn import mlp as mlp_module  # noqa: E402
from decision_minrnn.nn.scan import LONG_SEQUENCE  # noqa: E402

NEVER = 1 << 62  # a length rule no sequence passes
VARIANTS = {  # (dropout's length rule, the MLP's): a saver runs on sequences longer than its value
    "plain": (NEVER, NEVER),
    "masks": (0, NEVER),
    "recompute": (NEVER, 0),
    "package": (LONG_SEQUENCE, LONG_SEQUENCE),
}
SETTINGS = [  # (K, token layout, batch): DT's windows, and 1000-step sequences as the memory study trains them
    (20, "interleaved", 100),
    (20, "fused", 64),
    (1000, "interleaved", 2),
    (1000, "fused", 4),
]


def use(variant: str) -> None:
    dropout_module.LONG_SEQUENCE, mlp_module.LONG_SEQUENCE = VARIANTS[variant]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed steps per variant (median)")
    parser.add_argument("--backbone", default="mingru", choices=["mingru", "minlstm", "transformer"])
    parser.add_argument(
        "--settings",
        nargs="+",
        metavar="K:LAYOUT:BATCH",
        default=[f"{K}:{layout}:{batch}" for K, layout, batch in SETTINGS],
        help="the steps to time (default: DT's K = 20 windows and 1000-step sequences)",
    )
    args = parser.parse_args()
    try:
        settings = [(int(K), layout, int(batch)) for K, layout, batch in (s.split(":") for s in args.settings)]
    except ValueError:
        settings = None
    if (
        args.repeats < 1
        or not settings
        or any(K < 2 or b < 1 or lay not in ("interleaved", "fused") for K, lay, b in settings)
    ):
        print(
            "error: --repeats must be >= 1 and each setting K:LAYOUT:BATCH (K >= 2, a token layout, batch >= 1)",
            file=sys.stderr,
        )
        sys.exit(2)
    rows = []
    for K, layout, batch in settings:
        step = bench_context.step_fn(args.backbone, K, layout, batch)

        def run(variant, step=step):
            use(variant)
            step()

        times = time_interleaved({v: (lambda v=v: run(v)) for v in VARIANTS}, args.repeats, torch.device("cpu"))
        use("package")
        rows.append(
            {
                "K": K,
                "layout": layout,
                "batch": batch,
                "plain_ms": round(times["plain"] * 1e3, 1),
                "vs_plain": {v: round(t / times["plain"], 3) for v, t in times.items()},
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    out = {"benchmark": "memory_savers", "backbone": args.backbone, "repeats": args.repeats}
    print(json.dumps({**out, "machine": machine_info(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
