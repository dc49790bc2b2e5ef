"""Forward+backward time of minGRU / minLSTM (each scan method) vs a loop of step() vs torch.nn.GRU.

    python scripts/bench_scan.py [--lengths 20 60 200 1000 3000] [--repeats 3] [--device cpu] [--no-compiled]
    python scripts/bench_scan.py --shapes [--batches 1 2 4 8 16 64] [--lengths 200 1000 3000] [--threads 1]

Prints JSON. Ratios are taken between variants timed round-robin in this one run.

--shapes: the CPU scan choice by batch and length (what `scan="auto"` picks: nn/scan.py resolve_method, with
AUTO_METHOD and FEW_LANES): one cell layer forward+backward per (batch, T), with the sequential and the chunked
scan, each with the cell's time chunks of 128 steps and without them.
"""

import argparse
import json
import sys

import torch

from decision_minrnn.benchmarks import bench_scan, machine_info, time_interleaved
from decision_minrnn.nn.cells import MinGRU, MinLSTM


def _forward_backward(cell, x):
    return lambda: cell(x)[0].sum().backward()


def bench_shapes(batches, lengths, dim, repeats, cells=("mingru", "minlstm")) -> dict:
    classes = {"mingru": MinGRU, "minlstm": MinLSTM}
    rows = []
    for T in lengths:
        for B in batches:
            x = torch.randn(B, T, dim, requires_grad=True)
            fns = {}
            for name in cells:
                for scan in ("sequential", "chunked"):
                    for chunk in (128, None):
                        cell = classes[name](dim, scan=scan, time_chunk=chunk)
                        fns[f"{name}_{scan}_{chunk or 'whole'}"] = _forward_backward(cell, x)
            times = time_interleaved(fns, repeats, torch.device("cpu"))
            row = {"B": B, "T": T, "ms": {k: round(v * 1e3, 2) for k, v in times.items()}}
            for name in cells:
                today = times[f"{name}_sequential_128"]
                row[f"{name}_vs_sequential_128"] = {
                    k.removeprefix(f"{name}_"): round(v / today, 2) for k, v in times.items() if k.startswith(name)
                }
            rows.append(row)
            print(json.dumps(row), flush=True, file=sys.stderr)
    return {"benchmark": "scan_shapes", "machine": machine_info(), "threads": torch.get_num_threads(), "rows": rows}


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--lengths", type=int, nargs="+", default=None)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--dim", type=int, default=128)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--device", default="cpu")
parser.add_argument(
    "--no-compiled", action="store_true", help="skip the compile_gates=True variant and the projection-only timing"
)
parser.add_argument("--shapes", action="store_true", help="the CPU scan choice by batch and length (see above)")
parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 64])
parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
if args.shapes:
    result = bench_shapes(args.batches, args.lengths or [200, 1000, 3000], args.dim, args.repeats)
else:
    lengths = args.lengths or [20, 60, 200, 1000, 3000]
    result = bench_scan(lengths, args.batch, args.dim, args.repeats, args.device, compiled=not args.no_compiled)
print(json.dumps(result, indent=1))
