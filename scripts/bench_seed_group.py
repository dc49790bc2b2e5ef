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
# Unset options take bench_seed_group's defaults.
parser.add_argument("--seeds", type=int, dest="n_seeds")
parser.add_argument("--backbones", nargs="+")
parser.add_argument("--layouts", nargs="+")
parser.add_argument("--context", type=int, dest="K")
parser.add_argument("--batch", type=int)
parser.add_argument("--repeats", type=int)
parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
parser.add_argument("--device")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
given = {k: v for k, v in vars(args).items() if v is not None and k != "threads"}
out = bench_seed_group(**given)
print(json.dumps(out, indent=1))
