"""How the one acting step (`DecisionModel.step`) compares with the ways it could have been written (docs/speed.md
section 4a): per env step of a DT-size minGRU, 1 thread, at steady state (no env at its first step), medians of
interleaved rounds in one run. Prints JSON.

* sequence: the former `act`: the three tokens (a_{t-1}, R_t, s_t) as one short sequence continuing the state
  (interleaved), the backbone's step() on the one token (fused);
* token_by_token: one backbone step() per token (what a traced step does);
* split: a_{t-1} alone (so that a first step could keep the state), then (R_t, s_t) as one sequence;
* shipped: DecisionModel.step as it is.

    python scripts/bench_step_paths.py [--rounds 7] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from decision_minrnn.benchmarks import machine_info  # noqa: E402
from decision_minrnn.config import ModelConfig  # noqa: E402
from decision_minrnn.models import DecisionModel  # noqa: E402


def paths(model, n: int, steps: int) -> dict:
    obs, rtg, prev = torch.randn(n, 11), torch.randn(n, 1), torch.rand(n, 3)
    first = torch.zeros(n, dtype=torch.bool)
    m = model

    def tokens(parts, times):
        return m.tokens([p.unsqueeze(1) for p in parts], [t.unsqueeze(1) for t in times])

    def loop(one_step):
        def run():
            state = m.initial_state(n)
            for t in range(1, steps + 1):
                ts = torch.full((n,), t)
                _, state = one_step(ts, state)

        return run

    def sequence(ts, state):
        parts, times = m.layout.step_parts(m, obs, rtg, ts, prev, ts - 1)
        if len(parts) == 1:  # fused: one token, the backbone's step (as `act` did)
            y, state = m.backbone.step(m.token(parts[0], times[0]), state)
            return m.predict_action(y), state
        y, state = m.backbone(tokens(parts, times), state, last_only=True)
        return m.predict_action(y[:, -1]), state

    def token_by_token(ts, state):
        parts, times = m.layout.step_parts(m, obs, rtg, ts, prev, ts - 1)
        for part, t in zip(parts, times):
            y, state = m.backbone.step(m.token(part, t), state)
        return m.predict_action(y), state

    def split(ts, state):
        parts, times = m.layout.step_parts(m, obs, rtg, ts, prev, ts - 1)
        if len(parts) == 1:
            return sequence(ts, state)
        _, after = m.backbone.step(m.token(parts[0], times[0]), state)
        state = m.merge_state(state, after, first)
        y, state = m.backbone(tokens(parts[1:], times[1:]), state, last_only=True)
        return m.predict_action(y[:, -1]), state

    def shipped(ts, state):
        return m.step(obs, rtg, ts, prev, first, state)

    return {f.__name__: loop(f) for f in (sequence, token_by_token, split, shipped)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for layout in ("interleaved", "fused"):
        torch.manual_seed(0)
        model = DecisionModel(11, 3, ModelConfig("mingru", 128, 3, token_layout=layout)).eval()
        for n in (1, 10):
            fns = paths(model, n, args.steps)
            times = {name: [] for name in fns}
            with torch.inference_mode():
                for fn in fns.values():
                    fn()  # warm-up
                for _ in range(args.rounds):
                    for name, fn in fns.items():
                        start = time.perf_counter()
                        fn()
                        times[name].append(1e3 * (time.perf_counter() - start) / args.steps)
            ms = {name: sorted(v)[len(v) // 2] for name, v in times.items()}
            rows.append(
                {
                    "layout": layout,
                    "envs": n,
                    "ms_per_step": {k: round(v, 3) for k, v in ms.items()},
                    "over_sequence": {k: round(v / ms["sequence"], 2) for k, v in ms.items()},
                }
            )
    print(json.dumps({"machine": machine_info(), "rounds": args.rounds, "steps": args.steps, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
