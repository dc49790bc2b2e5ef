"""N seeds trained one after another vs as one seed group (train.seeds), step time measured side by side.

    python scripts/bench_seed_group.py [--seeds 5] [--threads 2] [--device cpu] [--repeats 5]

Prints JSON: per backbone and token layout, ms for N sequential steps and for one group step of the same
N models, and speedup = sequential / group (above 1: the group is faster).
"""

import argparse
import json

import torch

from decision_minrnn.benchmarks import bench_seed_group

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seeds", type=int, default=5)
parser.add_argument("--backbones", nargs="+", default=["mingru", "minlstm", "transformer"])
parser.add_argument("--layouts", nargs="+", default=["fused", "interleaved"])
parser.add_argument("--context", type=int, default=20)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
parser.add_argument("--device", default="cpu")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
out = bench_seed_group(args.seeds, args.backbones, args.layouts, args.context, args.batch, args.repeats, args.device)
print(json.dumps(out, indent=1))
