"""Cost curves against the context length K (issue 35): what training and acting cost per backbone as K grows.

    python scripts/bench_context.py --contexts 20 100 300 1000            # prints JSON
    python scripts/bench_context.py --contexts 20 1000 --repeats 1 --quick   # a smoke run
    python scripts/bench_context.py --act-only --act-layouts fused interleaved  # acting only, both token layouts

Training: one optimizer step (forward, masked MSE, backward, AdamW) of a DT-size model (embed 128, 3 layers,
Hopper's dims) per backbone and token layout, on batches of about --timesteps real timesteps (batch =
timesteps // K, at least 1, no padding), so that every K trains on the same data per step. Reported: the
median milliseconds per step and per 1000 real timesteps, timed round-robin in one process per (K, layout)
(the ratios are the numbers to trust), and each step's peak memory, measured in fresh processes (peak RSS
minus the RSS before the model was built; the median of --memory-repeats processes, with their range), beside
memory.training_bytes' estimate, which train checks first. glibc's malloc keeps a heap of freed blocks whose
size moves from process to process (its mmap threshold grows with the blocks freed), which makes that peak vary
by several percent between identical runs; so each row also has `alloc_peak_mb`, one more process with
MALLOC_MMAP_THRESHOLD_ fixed at 128 KiB: every large tensor is mmapped and given back when freed, so the peak
is the tensors' own, the same in every run (what a model change saves shows there; on a libc other than glibc
the variable does nothing and the two columns measure the same thing).
Backbones: minGRU, minLSTM, our transformer, and the peer DT
(transformers' DecisionTransformerModel, scripts/bench_peer_dt.py) in the interleaved layout its users run,
with GPT-2's position table grown to the sequence; where a step fails to allocate, "OOM".

Acting: milliseconds per environment step for --envs episodes at once, at step K of an episode, through the
Policy users act with (one torch thread, its default): minGRU's and minLSTM's recurrent step (O(1): the state
is the same size at every K), our transformer's window mode with the KV cache (the cache holds K - 1 steps) and
without it (DT's re-run of the last K steps), beside MuJoCo's own step (Hopper-v5, random actions, per env
step) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decision_minrnn.benchmarks import machine_info, time_interleaved  # noqa: E402
from decision_minrnn.config import load_config  # noqa: E402
from decision_minrnn.data.info import DataInfo  # noqa: E402
from decision_minrnn.data.normalization import ObsNormalizer  # noqa: E402
from decision_minrnn.memory import training_bytes  # noqa: E402
from decision_minrnn.models import build_model  # noqa: E402
from decision_minrnn.policy import Policy  # noqa: E402
from decision_minrnn.synthetic import ACT_DIM, OBS_DIM, random_batch  # noqa: E402
from decision_minrnn.update import adamw, masked_mse  # noqa: E402

BACKBONES = ("mingru", "minlstm", "transformer")
PEER = "peer_dt"


def build(name: str, K: int, layout: str):
    """(model, batch builder's K) of a backbone at context K: DT's width, float32."""
    backbone = "transformer" if name == PEER else name
    cfg = load_config(None, [f"model.backbone={backbone}", f"model.token_layout={layout}", f"data.context_len={K}"])
    torch.manual_seed(0)
    if name == PEER:
        from bench_peer_dt import PeerDT

        return PeerDT(OBS_DIM, ACT_DIM, cfg, n_positions=max(1024, 3 * K)), cfg
    return build_model(cfg, OBS_DIM, ACT_DIM), cfg


def step_fn(name: str, K: int, layout: str, batch: int):
    model, cfg = build(name, K, layout)
    model.train()
    optimizer = adamw(model, cfg)
    data = random_batch(batch, K, OBS_DIM, ACT_DIM, torch.float32)

    def step():
        loss = masked_mse(model(data), data["act"], data["mask"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_rss() -> int:
    """VmHWM, this process's peak RSS since its exec (getrusage's ru_maxrss survives exec: a process forked
    from a larger one reports the parent's size)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def measure_memory(name: str, K: int, layout: str, batch: int) -> dict:
    """In this (fresh) process: the peak RSS of two training steps above the RSS before the model, with every
    library the step imports already loaded (the peer's transformers; torch._dynamo, which torch's optimizers
    import when first built): the step's memory, not code pages."""
    torch.set_num_threads(1)
    if name == PEER:
        import bench_peer_dt  # noqa: F401
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    before = rss()
    try:
        step = step_fn(name, K, layout, batch)
        step()
        step()
    except (RuntimeError, MemoryError) as exc:
        return {"peak_mb": "OOM", "error": str(exc).splitlines()[0][:200]}
    peak = peak_rss()
    _, cfg = build("transformer" if name == PEER else name, K, layout)
    cfg = replace(cfg, train=replace(cfg.train, batch_size=batch))
    estimate = training_bytes(cfg, OBS_DIM, ACT_DIM, 3 if layout == "interleaved" else 1, K)
    return {"peak_mb": round((peak - before) / 2**20, 1), "estimate_mb": round(estimate / 2**20, 1)}


# glibc's threshold above which malloc mmaps a block (and munmaps it when freed); set, it stops moving.
MMAP_THRESHOLD = 128 * 1024


def _peak_in_process(name: str, K: int, layout: str, batch: int, env: dict | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--memory-of", name, str(K), layout, str(batch)],
        capture_output=True,
        text=True,
        env=None if env is None else {**os.environ, **env},
    )
    if done.returncode != 0:  # killed by the kernel's OOM killer, or an allocation that aborted
        return {"peak_mb": "OOM"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_memory(name: str, K: int, layout: str, batch: int, repeats: int = 3) -> dict:
    """{"peak_mb" (median of `repeats` processes), "peak_range_mb", "alloc_peak_mb" (large blocks mmapped: the
    tensors' own peak, module docstring), "estimate_mb"} (memory.training_bytes, the check train makes before it
    starts); "OOM" for a measure whose process failed to allocate."""
    runs = [_peak_in_process(name, K, layout, batch) for _ in range(repeats)]
    fixed = _peak_in_process(name, K, layout, batch, {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)})
    peaks = [r["peak_mb"] for r in runs]
    if "OOM" in peaks:
        return {"peak_mb": "OOM", "alloc_peak_mb": fixed["peak_mb"]}
    return {
        "peak_mb": round(float(np.median(peaks)), 1),
        "peak_range_mb": [min(peaks), max(peaks)],
        "alloc_peak_mb": fixed["peak_mb"],
        "estimate_mb": runs[0]["estimate_mb"],
    }


def memory_columns(measured: dict) -> dict:
    """A row's memory columns, {column: {backbone: value}}, from peak_memory's result per backbone."""
    columns = ("peak_mb", "peak_range_mb", "alloc_peak_mb", "estimate_mb")
    return {col: {name: m.get(col) for name, m in measured.items()} for col in columns}


LAYOUTS = ("interleaved", "fused")


def train_rows(contexts, timesteps: int, repeats: int, memory_repeats: int, layouts=LAYOUTS) -> list[dict]:
    """memory_repeats: processes for each default-allocator peak (0: no memory columns)."""
    rows = []
    for K in contexts:
        batch = max(1, timesteps // K)
        for layout in layouts:
            names = [*BACKBONES, PEER] if layout == "interleaved" else list(BACKBONES)
            fns, failed = {}, {}
            for name in names:
                try:
                    fns[name] = step_fn(name, K, layout, batch)
                except ImportError as exc:  # the peer needs the [peer] extra
                    failed[name] = f"not installed ({exc.name})"
            times = time_interleaved(fns, repeats, torch.device("cpu"))
            real = batch * K
            row = {
                "K": K,
                "layout": layout,
                "batch": batch,
                "real_timesteps": real,
                "ms_per_step": {k: round(v * 1e3, 1) for k, v in times.items()},
                "ms_per_1000_timesteps": {k: round(v * 1e6 / real, 2) for k, v in times.items()},
                "vs_transformer": {k: round(v / times["transformer"], 3) for k, v in times.items()},
                **({"not_timed": failed} if failed else {}),
            }
            if PEER in times:
                row["vs_peer_dt"] = {k: round(v / times[PEER], 3) for k, v in times.items()}
            if memory_repeats:
                measured = {name: peak_memory(name, K, layout, batch, memory_repeats) for name in fns}
                row.update(memory_columns(measured))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)  # progress: the rows as they come
    return rows


def mujoco_step_ms(n_steps: int = 500) -> float:
    import gymnasium as gym

    env = gym.make("Hopper-v5")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(n_steps, ACT_DIM)).astype(np.float32)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return seconds / n_steps * 1e3


def acting_fns(K: int, n_envs: int, steps: int, layout: str = "fused") -> dict:
    """Zero-argument functions, each acting `steps` env steps for n_envs episodes at step K of an episode."""
    norm = ObsNormalizer(np.zeros(OBS_DIM, np.float32), np.ones(OBS_DIM, np.float32))
    data = DataInfo("random", OBS_DIM, ACT_DIM, norm)
    obs = np.random.default_rng(0).normal(size=(n_envs, OBS_DIM)).astype(np.float32)
    reward = np.ones(n_envs)
    fns = {}
    for name in ("mingru", "minlstm"):
        model, _ = build(name, K, layout)
        policy = Policy(model, data, 3600.0, context_len=K, mode="recurrent")

        def recurrent(policy=policy):
            state = policy.initial_state(n_envs, 3600.0)
            state.t[:] = min(K, 999) - 1  # the recurrent state's size does not depend on the step
            for _ in range(steps):
                _, state = policy.predict(obs, state, reward=reward)

        fns[f"{name}_recurrent"] = recurrent
    model, _ = build("transformer", K, layout)
    for cached in (True, False):
        # with the cache: room for the K - 1 steps already seen and the timed ones; without: DT's K-step window
        window = K - 1 + steps if cached else K
        policy = Policy(model, data, 3600.0, context_len=window, mode="window", kv_cache=cached)

        def window(policy=policy, cached=cached):
            state = prefilled(policy, n_envs, K - 1 if cached else K)
            for _ in range(steps):
                _, state = policy.predict(obs, state, reward=reward)

        fns["transformer_window_kv_cache" if cached else "transformer_window_rerun"] = window
    return fns


def prefilled(policy: Policy, n: int, filled: int):
    """A window-mode state whose window (and KV cache) already holds `filled` steps of random history."""
    state = policy.initial_state(n, 3600.0)
    w = state.backbone
    generator = torch.Generator().manual_seed(0)
    for key in ("obs", "act", "prev_act", "rtg"):
        w[key][:, :filled] = torch.randn(w[key][:, :filled].shape, generator=generator)
    w["timesteps"][:, :filled] = torch.arange(filled).clamp(max=999)
    w["filled"][:] = filled
    state.t[:] = filled
    if "kv" in w and filled:
        m = policy.model
        with torch.inference_mode():
            tokens = m.embed(
                w["obs"][:, :filled],
                w["act"][:, :filled],
                w["rtg"][:, :filled],
                w["timesteps"][:, :filled],
                w["prev_act"][:, :filled],
            )
            if m.token_layout == "interleaved":  # the cache holds (R_t, s_t) of the last step, not a_t (not yet acted)
                tokens = tokens[:, :-1]
            m.backbone.forward_cached(tokens, w["kv"], 0)
        w["kv_len"][:] = tokens.shape[1]
    return state


def memory_rows(contexts, timesteps: int, memory_repeats: int, layouts=LAYOUTS) -> list[dict]:
    """Only the peak-memory processes of the training rows (no timing), e.g. to measure them again alone."""
    rows = []
    for K in contexts:
        batch = max(1, timesteps // K)
        for layout in layouts:
            names = [*BACKBONES, PEER] if layout == "interleaved" else list(BACKBONES)
            measured = {name: peak_memory(name, K, layout, batch, memory_repeats) for name in names}
            rows.append({"K": K, "layout": layout, "batch": batch, **memory_columns(measured)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def act_rows(contexts, n_envs: int, steps: int, repeats: int, layout: str = "fused") -> list[dict]:
    rows = []
    torch.set_num_threads(1)  # the Policy's default while acting (policy.cpu_threads)
    for K in contexts:
        fns = acting_fns(K, n_envs, steps, layout)
        fns["mujoco_step"] = lambda: [mujoco_step_ms(steps * n_envs)]
        times = time_interleaved(fns, repeats, torch.device("cpu"))
        per_env_step = {k: v / (steps * n_envs) * 1e3 for k, v in times.items()}
        mujoco = per_env_step.pop("mujoco_step")
        rows.append(
            {
                "K": K,
                "layout": layout,
                "envs": n_envs,
                "ms_per_env_step": {k: round(v, 4) for k, v in per_env_step.items()},
                "mujoco_ms_per_env_step": round(mujoco, 4),
                "vs_mujoco": {k: round(v / mujoco, 3) for k, v in per_env_step.items()},
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[20, 100, 300, 1000], help="K values (>= 2)")
    parser.add_argument("--timesteps", type=int, default=2000, help="real timesteps per training batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per variant (median)")
    parser.add_argument("--envs", type=int, default=10, help="episodes acted at once")
    parser.add_argument("--act-steps", type=int, default=20, help="env steps per timed acting call")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for training (0: torch's default)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    parser.add_argument("--quick", action="store_true", help="training rows only for K's ends, no memory")
    parser.add_argument("--memory-only", action="store_true", help="only the peak memory of each training row")
    parser.add_argument(
        "--memory-repeats", type=int, default=3, help="fresh processes per default-allocator peak (median)"
    )
    parser.add_argument("--act-only", action="store_true", help="only the acting rows (no training, no memory)")
    parser.add_argument(
        "--layouts",
        nargs="+",
        choices=LAYOUTS,
        default=list(LAYOUTS),
        help="token layouts of the training and memory rows (the peer DT runs interleaved only)",
    )
    parser.add_argument(
        "--act-layouts",
        nargs="+",
        choices=["fused", "interleaved"],
        default=["fused"],
        help="token layouts of the acting rows (fused: the memory study's; interleaved: the package's default)",
    )
    parser.add_argument("--memory-of", nargs=4, metavar=("BACKBONE", "K", "LAYOUT", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        name, K, layout, batch = args.memory_of
        print(json.dumps(measure_memory(name, int(K), layout, int(batch))))
        return
    counts = (args.timesteps, args.repeats, args.envs, args.act_steps, args.memory_repeats)
    if min(args.contexts) < 2 or min(counts) < 1:
        print("error: --contexts must be >= 2 and the counts >= 1", file=sys.stderr)
        sys.exit(2)
    if args.threads:
        torch.set_num_threads(args.threads)
    contexts = sorted(set(args.contexts))
    if args.memory_only:
        rows = memory_rows(contexts, args.timesteps, args.memory_repeats, args.layouts)
        print(json.dumps({"benchmark": "context_memory", "machine": machine_info(), "train": rows}, indent=1))
        return
    train_contexts = [contexts[0], contexts[-1]] if args.quick else contexts
    out = {"benchmark": "context_costs", "machine": machine_info(), "timesteps_per_batch": args.timesteps}
    out["repeats"] = args.repeats
    if not args.act_only:
        memory_repeats = 0 if args.no_memory or args.quick else args.memory_repeats
        out["train"] = train_rows(train_contexts, args.timesteps, args.repeats, memory_repeats, args.layouts)
    out["act"] = [
        row
        for layout in args.act_layouts
        for row in act_rows(contexts, args.envs, args.act_steps, args.repeats, layout)
    ]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
