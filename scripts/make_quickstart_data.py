"""Write the quickstart dataset: the first N episodes of bench/hopper/medium-v0 in D4RL hdf5 layout.

    MINARI_DATASETS_PATH=../shared/bench-data/minari python scripts/make_quickstart_data.py [--episodes 120]

Provenance: ../shared/bench-data (see its README): a SAC policy trained 150k steps on Hopper-v5, actions
sampled stochastically ("medium-low": 35 D4RL-normalized). Stored as float32 with gzip, a few MB.
"""

import argparse

from decision_minrnn.data import load_minari
from decision_minrnn.data.episodes import write_d4rl_hdf5

parser = argparse.ArgumentParser()
parser.add_argument("--source", default="bench/hopper/medium-v0")
parser.add_argument("--episodes", type=int, default=120)
parser.add_argument("--out", default="decision_minrnn/assets/hopper-medium-bench-slice.hdf5")
args = parser.parse_args()

episodes = load_minari(args.source).episodes[: args.episodes]
source = f"first {len(episodes)} episodes of {args.source} (decision-minrnn shared bench-data)"
write_d4rl_hdf5(args.out, episodes, attrs={"source": source}, compress=True)
print(f"wrote {args.out}: {len(episodes)} episodes, {sum(len(e) for e in episodes)} steps")
