"""Training cost against K of two checkouts, alternated: what a change to the backbones does to
scripts/bench_context.py's training rows (and to a whole-episode step of 4 episodes), old and new side by side.

    git worktree add /tmp/before HEAD~1
    python scripts/bench_context_ab.py /tmp/before . --contexts 1000 --rounds 2

Each round runs each checkout once, in its own process (its own package, imported from that checkout), and
prints one JSON line per process: ms per 1000 real timesteps per backbone and layout at each K (batches of
--timesteps real timesteps, --repeats round-robin repeats), and ms per step of 4 whole K-step sequences for
minGRU and minLSTM.
"""

import argparse
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys
root = sys.argv[1]
sys.path[:0] = [root, root + "/scripts"]
import torch
import decision_minrnn, bench_context as bc
from decision_minrnn.benchmarks import time_interleaved
assert decision_minrnn.__file__.startswith(root), decision_minrnn.__file__
timesteps, repeats = int(sys.argv[2]), int(sys.argv[3])
contexts = [int(k) for k in sys.argv[4:]]
rows = bc.train_rows(contexts, timesteps, repeats, 0)  # 0: no memory processes
out = {"root": root, "train": [{"K": r["K"], "layout": r["layout"], "ms": r["ms_per_1000_timesteps"]} for r in rows]}
fns = {f"{n}_{l}_b4_K{k}": bc.step_fn(n, k, l, 4) for k in contexts for n in ("mingru", "minlstm")
       for l in ("fused", "interleaved")}
times = time_interleaved(fns, repeats, torch.device("cpu"))
out["ms_per_step_4_sequences"] = {k: round(v * 1e3, 1) for k, v in times.items()}
print(json.dumps(out))
"""

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("before", type=Path)
parser.add_argument("after", type=Path)
parser.add_argument("--contexts", type=int, nargs="+", default=[1000])
parser.add_argument("--rounds", type=int, default=2)
parser.add_argument("--timesteps", type=int, default=2000, help="real timesteps per training batch")
parser.add_argument("--repeats", type=int, default=5, help="round-robin timed calls per variant (median)")
args = parser.parse_args()
if min(args.contexts) < 2 or min(args.timesteps, args.repeats, args.rounds) < 1:
    parser.exit(2, "error: --contexts must be >= 2 and the counts >= 1 (as bench_context.py)\n")
for _ in range(args.rounds):
    for root in (args.before, args.after):
        cmd = [sys.executable, "-c", CHILD, str(root.resolve()), str(args.timesteps), str(args.repeats)]
        cmd += map(str, args.contexts)
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        print(done.stdout.strip().splitlines()[-1], flush=True)
