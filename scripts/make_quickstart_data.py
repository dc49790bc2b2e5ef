"""Write the quickstart dataset: the first N episodes of bench/hopper/medium-v0 in D4RL hdf5 layout.

    MINARI_DATASETS_PATH=../shared/bench-data/minari python scripts/make_quickstart_data.py [--episodes 120]

Provenance: ../shared/bench-data (see its README): a SAC policy trained 150k steps on Hopper-v5, actions
sampled stochastically ("medium-low": 35 D4RL-normalized). Stored as float32 with gzip, a few MB.
"""

import argparse

import h5py
import numpy as np

from decision_minrnn.data import load_minari

parser = argparse.ArgumentParser()
parser.add_argument("--source", default="bench/hopper/medium-v0")
parser.add_argument("--episodes", type=int, default=120)
parser.add_argument("--out", default="decision_minrnn/assets/hopper-medium-bench-slice.hdf5")
args = parser.parse_args()

episodes = load_minari(args.source).episodes[: args.episodes]
arrays = {
    "observations": np.concatenate([e.obs for e in episodes]).astype(np.float32),
    "actions": np.concatenate([e.act for e in episodes]).astype(np.float32),
    "rewards": np.concatenate([e.rew for e in episodes]).astype(np.float32),
    "terminals": np.concatenate([np.eye(1, len(e), len(e) - 1, dtype=bool)[0] & e.terminated for e in episodes]),
    "timeouts": np.concatenate([np.eye(1, len(e), len(e) - 1, dtype=bool)[0] & (not e.terminated) for e in episodes]),
}
with h5py.File(args.out, "w") as f:
    for key, value in arrays.items():
        f.create_dataset(key, data=value, compression="gzip", compression_opts=9, shuffle=True)
    f.attrs["source"] = f"first {len(episodes)} episodes of {args.source} (decision-minrnn shared bench-data)"
print(f"wrote {args.out}: {len(episodes)} episodes, {len(arrays['rewards'])} steps")
