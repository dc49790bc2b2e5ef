"""Per-env-step inference time: recurrent (carried state, O(1)) vs window (re-run last K steps, O(K)).

    python scripts/bench_inference.py [--contexts 20 100] [--n-envs 1 10] [--backbone mingru]

Prints JSON with the recurrent speed-up over each window length, measured side by side.
"""

import argparse
import json

from decision_minrnn.benchmarks import bench_inference

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--contexts", type=int, nargs="+", default=[20, 100])
parser.add_argument("--n-envs", type=int, nargs="+", default=[1, 10])
parser.add_argument("--backbone", default="mingru")
parser.add_argument("--layout", default="interleaved")
parser.add_argument("--steps", type=int, default=100)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--device", default="cpu")
args = parser.parse_args()
print(
    json.dumps(
        bench_inference(args.contexts, args.n_envs, args.steps, args.backbone, args.layout, args.repeats, args.device),
        indent=1,
    )
)
