"""Time to sample one training batch from a real dataset (to compare with a training step).

MINARI_DATASETS_PATH=../shared/bench-data/minari python scripts/bench_sampler.py [--source bench/hopper/medium-v0]
"""

import argparse
import json

from decision_minrnn.benchmarks import bench_sampler

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--source", default="bench/hopper/medium-v0")
parser.add_argument("--contexts", type=int, nargs="+", default=[20, 200])
args = parser.parse_args()
print(json.dumps(bench_sampler(args.source, args.contexts), indent=1))
