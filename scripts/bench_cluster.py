"""The cost of the cluster path: one small grid swept on a local Ray instance (runs write RUNS_ROOT directly)
and on a two-node loopback cluster with --storage (scratch directories, a copy to storage after every
checkpoint, files sent home), in one process, alternating. Prints JSON with wall seconds per sweep.

    python scripts/bench_cluster.py [--repeats 2] [--steps 100] [--seeds 2]

The grid is synthetic (decision_minrnn/synthetic.py's smooth-policy episodes in a temporary Minari root), so the
script needs nothing downloaded. Each sweep starts its Ray processes; that start is part of what it costs.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from decision_minrnn.benchmarks import machine_info
from decision_minrnn.experiments.sweep import sweep
from decision_minrnn.synthetic import make_minari_dataset, synthetic_episodes

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--repeats", type=int, default=2)
parser.add_argument("--steps", type=int, default=100)
parser.add_argument("--seeds", type=int, default=2)
args = parser.parse_args()

work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
os.environ["MINARI_DATASETS_PATH"] = str(work / "minari")
make_minari_dataset("test/hopper/medium-v0", synthetic_episodes(6))
config = work / "hopper-medium.yaml"
config.write_text(yaml.safe_dump({"data": {"source": "test/hopper/medium-v0"}}))
small = ["model.embed_dim=16", "model.n_layers=1", "data.context_len=5", "train.batch_size=4", "train.warmup_steps=2"]
steps = [f"train.steps={args.steps}", "train.checkpoint_every=20", "train.log_every=20", "eval.episodes=2"]
grid = work / "grid.yaml"
spec = {"name": "g", "datasets": {"hopper-medium": str(config)}, "backbones": ["mingru"]}
spec |= {"seeds": list(range(args.seeds)), "set": small + steps + ["eval.max_steps=20", "eval.target_returns=[3600]"]}
grid.write_text(yaml.safe_dump(spec))


def local(i):
    return sweep(str(grid), runs_root=str(work / f"local{i}"), max_parallel=1, log=lambda *_: None)


def cluster(i):
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only (see tests/experiments/test_cluster.py)
    ray_constants.ENABLE_RAY_CLUSTER = False
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1"})
    try:
        c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        return sweep(
            str(grid),
            runs_root=str(work / f"driver{i}"),
            address=c.address,
            storage=str(work / f"store{i}"),
            log=lambda *_: None,
        )
    finally:
        c.shutdown()


seconds = {"local": [], "cluster_with_storage": []}
for i in range(args.repeats):
    for name, fn in (("local", local), ("cluster_with_storage", cluster)):
        start = time.perf_counter()
        out = fn(i)
        seconds[name].append(round(time.perf_counter() - start, 1))
        assert out["failed"] == 0 and out["ran"] == args.seeds, out["records"]
median = {k: sorted(v)[len(v) // 2] for k, v in seconds.items()}
print(
    json.dumps(
        {
            "machine": machine_info(),
            "runs": args.seeds,
            "steps": args.steps,
            "seconds": seconds,
            "median": median,
            "cluster_over_local": round(median["cluster_with_storage"] / median["local"], 2),
        },
        indent=1,
    )
)
