"""Forward+backward time of minGRU / minLSTM (each scan method) vs a loop of step() vs torch.nn.GRU.

    python scripts/bench_scan.py [--lengths 20 60 200 1000 3000] [--repeats 3] [--device cpu] [--no-compiled]

Prints JSON. Ratios are taken between variants timed round-robin in this one run.
"""

import argparse
import json

from decision_minrnn.benchmarks import bench_scan

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--lengths", type=int, nargs="+", default=[20, 60, 200, 1000, 3000])
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--dim", type=int, default=128)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--device", default="cpu")
parser.add_argument(
    "--no-compiled", action="store_true", help="skip the compile_gates=True variant and the projection-only timing"
)
args = parser.parse_args()
print(
    json.dumps(
        bench_scan(args.lengths, args.batch, args.dim, args.repeats, args.device, compiled=not args.no_compiled),
        indent=1,
    )
)
