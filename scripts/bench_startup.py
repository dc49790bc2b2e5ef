"""Start-up time of CLI commands for two installs side by side (e.g. before and after a change).

    python scripts/bench_startup.py OLD/.venv/bin/decision-minrnn NEW/.venv/bin/decision-minrnn [--repeats 7]

Prints JSON: the median wall time of each command for each executable (alternating runs) and their ratio.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

COMMANDS = (
    ["datasets", "list"],
    ["evaluate", "--checkpoint", "/nonexistent"],
    # loads a config (defaults, the packaged YAML, three overrides), then refuses it: nothing is written
    ["train", "--config", "quickstart", "--run-dir", "/nonexistent/run", "--set", "train.steps=5",
     "--set", "eval.episodes=2", "--set", "model.embed_dim=-1"],
)  # fmt: skip

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("before")
parser.add_argument("after")
parser.add_argument("--repeats", type=int, default=7)
args = parser.parse_args()
env = {**os.environ, "MINARI_DATASETS_PATH": tempfile.mkdtemp()}
out = {}
for command in COMMANDS:
    times = {"before": [], "after": []}
    for _ in range(args.repeats):
        for which in times:
            start = time.perf_counter()
            subprocess.run(
                [getattr(args, which), *command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            times[which].append(time.perf_counter() - start)
    medians = {k: round(statistics.median(v), 3) for k, v in times.items()}
    out[" ".join(command)] = {**medians, "before_over_after": round(medians["before"] / medians["after"], 2)}
print(json.dumps(out, indent=1))
