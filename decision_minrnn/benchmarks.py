"""Speed measurements shared by scripts/ and `decision-minrnn bench`. Every function returns plain dicts
(JSON-ready); ratios are taken between variants measured in the same process, interleaved, so machine
noise hits all of them alike."""

from __future__ import annotations

import os
import platform
import tempfile
import time

import numpy as np
import torch

from .acting import cpu_threads
from .choices import BACKBONES, TOKEN_LAYOUTS, TOKENS_PER_STEP
from .config import ModelConfig
from .data import ObsNormalizer, WindowSampler, load_source
from .data.info import DataInfo
from .device import cpu_has_native_bf16, cpu_model, native_bf16
from .envs.make import make_env
from .export import write_onnx
from .models import DecisionModel
from .nn import SCAN_METHODS, MinGRU, MinLSTM
from .nn.scan import opaque_to_compile, resolve_method
from .onnx_runner import OnnxPolicy
from .policy import Policy
from .synthetic import ACT_DIM, OBS_DIM, random_batch
from .update import FUSED_ADAMW, SeedGroup, masked_mse, optimizer_step


def machine_info() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_native_bf16": cpu_has_native_bf16(),
    }
    return info


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_mb(fn, device: torch.device) -> float:
    """Peak CUDA memory allocated during one call of fn (already warmed up), in MiB."""
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def time_interleaved(fns: dict, repeats: int, device: torch.device, warmup: int = 1) -> dict:
    """Median seconds per call for each named zero-argument function, called round-robin."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            _sync(device)
            samples[name].append(time.perf_counter() - start)
    return {name: sorted(s)[len(s) // 2] for name, s in samples.items()}


def _step_loop(cell, inputs):
    h, ys = None, []
    for x_t in inputs:
        y, h = cell.step(x_t, h)
        ys.append(y)
    torch.stack(ys, 1).sum().backward()


def bench_scan(
    lengths=(20, 60, 200, 1000, 3000),
    batch=64,
    dim=128,
    repeats=3,
    device="cpu",
    loop_max_T=3000,
    sliced_loop_max_T=1000,
    cells=("mingru", "minlstm"),
    compiled=True,
) -> dict:
    """Forward+backward of one layer: minGRU/minLSTM by each scan method and by a loop of step(),
    against torch.nn.GRU of the same width (oneDNN/cuDNN fused).

    Two loops: `step_loop` feeds x.unbind(1) (the fair baseline); `step_loop_sliced` feeds x[:, t], the
    way a loop is usually written, whose backward writes each step's gradient into a fresh full-size zero
    tensor of x (O(T^2) memory traffic). The step loop measured before this package existed (docs/speed.md
    section 1) behaves like the sliced one.

    compiled: also time the auto scan with compile_gates=True (the gate math through torch.compile;
    its one-off compile time is reported apart, not in the timings) and the input projection alone (the
    Linear's matmul forward+backward), the part every variant and every loop has to pay."""

    device = torch.device(device)
    classes = {"mingru": MinGRU, "minlstm": MinLSTM}
    auto = resolve_method("auto", device)
    results = []
    for T in lengths:
        x = torch.randn(batch, T, dim, device=device, requires_grad=True)
        gru = torch.nn.GRU(dim, dim, batch_first=True).to(device)
        fns = {"nn_gru": lambda: gru(x)[0].sum().backward()}
        compile_s = {}
        for cell_name in cells:
            for method in SCAN_METHODS:
                cell = classes[cell_name](dim, scan=method).to(device)
                fns[f"{cell_name}_{method}"] = (lambda c: lambda: c(x)[0].sum().backward())(cell)
            if compiled:
                cell = classes[cell_name](dim, compile_gates=True).to(device)
                fns[f"{cell_name}_compiled"] = (lambda c: lambda: c(x)[0].sum().backward())(cell)
                start = time.perf_counter()
                fns[f"{cell_name}_compiled"]()  # compiles (or loads Inductor's on-disk cache)
                compile_s[cell_name] = round(time.perf_counter() - start, 2)
                fns[f"{cell_name}_projection"] = (lambda c: lambda: c.to_gates(x).sum().backward())(cell)
            loop_cell = classes[cell_name](dim).to(device)
            if T <= loop_max_T:
                fns[f"{cell_name}_step_loop"] = (lambda c: lambda: _step_loop(c, x.unbind(1)))(loop_cell)
            if T <= sliced_loop_max_T:
                fns[f"{cell_name}_step_loop_sliced"] = (lambda c: lambda: _step_loop(c, [x[:, t] for t in range(T)]))(
                    loop_cell
                )
        times = time_interleaved(fns, repeats, device)
        row = {"T": T, "ms": {k: round(v * 1e3, 2) for k, v in times.items()}, "ratios": {}, "auto_method": auto}
        if compiled:
            row["first_compiled_call_s"] = compile_s
        for cell_name in cells:
            row[f"{cell_name}_fastest_scan"] = min(SCAN_METHODS, key=lambda m: times[f"{cell_name}_{m}"])
            for variant, label in ((auto, "auto"), ("compiled", "compiled")):
                if f"{cell_name}_{variant}" not in times:
                    continue
                variant_time = times[f"{cell_name}_{variant}"]
                for other in ("nn_gru", "step_loop", "step_loop_sliced", "log"):
                    other_time = times.get(other) or times.get(f"{cell_name}_{other}")
                    if other_time:
                        row["ratios"][f"{cell_name}_{label}_vs_{other}_speedup"] = round(other_time / variant_time, 2)
            if f"{cell_name}_projection" in times and f"{cell_name}_step_loop" in times:
                # No exact path can beat the fair loop by more than this without cutting the projection's
                # multiply-adds: both pay for them.
                row["ratios"][f"{cell_name}_step_loop_vs_projection_ceiling"] = round(
                    times[f"{cell_name}_step_loop"] / times[f"{cell_name}_projection"], 2
                )
        results.append(row)
    return {
        "benchmark": "scan",
        "batch": batch,
        "dim": dim,
        "device": str(device),
        "repeats": repeats,
        "machine": machine_info(),
        "results": results,
    }


def bench_train_step(
    backbones=BACKBONES,
    contexts=(20, 200, 1000),
    layouts=TOKEN_LAYOUTS,
    batch_for_context=None,
    repeats=3,
    device="cpu",
    embed_dim=128,
    n_layers=3,
    compiled_gates=True,
    bf16: bool | None = None,
    train_compile: bool | None = None,
    fast_dropout: bool = True,
    per_tensor_adamw: bool = False,
) -> dict:
    """One optimizer step (forward, masked MSE, backward, AdamW) of a DecisionModel, per backbone x K x layout.
    Hopper's dims (11 / 3). Batch 64 by default, 16 at K >= 1000 (a transformer over 3000 tokens at 64 does
    not fit a laptop's budget); the batch used is printed with every row.

    compiled_gates: also time each minRNN backbone with model.compile_gates=true, as "<name>_compiled"
    (its compile happens in the untimed warm-up call).
    bf16: also time every backbone under bf16 autocast (train.amp=bf16), as "<name>_bf16". Default: where the
    device has native bf16 (device.native_bf16: CUDA with bf16, a CPU with AVX512-BF16 or AMX); the result
    says what was found ("native_bf16").
    fast_dropout: also time every backbone with model.dropout_impl=fast, as "<name>_fast_dropout" (and
    "<name>_bf16_fast_dropout" with bf16).
    per_tensor_adamw: also time every backbone with torch's per-tensor AdamW loop instead of the fused AdamW
    that update.adamw builds, as "<name>_per_tensor_adamw" (the optimizer before it was fused).
    train_compile: also time every backbone through torch.compile of the whole model (train.compile=true), as
    "<name>_train_compile". Defaults to on for CUDA and off for CPU.
    On CUDA each row also gives every variant's peak allocated memory over one step ("peak_mb")."""

    device = torch.device(device)
    has_bf16 = native_bf16(device)
    bf16 = has_bf16 if bf16 is None else bf16
    train_compile = device.type == "cuda" if train_compile is None else train_compile
    if train_compile:
        opaque_to_compile()
    batch_for_context = batch_for_context or {K: (64 if K < 1000 else 16) for K in contexts}
    # (label, backbone, compile_gates, bf16 autocast, whole-model torch.compile, dropout impl, fused AdamW)
    variants = [(name, name, False, False, False, "torch", True) for name in backbones]
    if compiled_gates:
        minrnns = [n for n in backbones if n in ("mingru", "minlstm")]
        variants += [(f"{n}_compiled", n, True, False, False, "torch", True) for n in minrnns]
    if fast_dropout:
        variants += [(f"{name}_fast_dropout", name, False, False, False, "fast", True) for name in backbones]
    if per_tensor_adamw:
        variants += [(f"{name}_per_tensor_adamw", name, False, False, False, "torch", False) for name in backbones]
    if bf16:
        variants += [(f"{name}_bf16", name, False, True, False, "torch", True) for name in backbones]
        if fast_dropout:
            variants += [(f"{name}_bf16_fast_dropout", name, False, True, False, "fast", True) for name in backbones]
    if train_compile:
        variants += [(f"{name}_train_compile", name, False, False, True, "torch", True) for name in backbones]
    rows = []
    for K in contexts:
        B = batch_for_context[K]
        for layout in layouts:
            fns = {}
            data = random_batch(B, K, OBS_DIM, ACT_DIM, dtype=torch.float32, device=device)
            for label, name, compile_gates, amp, whole, dropout_impl, fused in variants:
                model_cfg = ModelConfig(
                    name,
                    embed_dim,
                    n_layers,
                    token_layout=layout,
                    compile_gates=compile_gates,
                    dropout_impl=dropout_impl,
                )
                fns[label] = _train_step_fn(model_cfg, data, device, amp, whole, fused)
            times = time_interleaved(fns, repeats, device)
            ref = times.get("transformer")
            row = {
                "K": K,
                "tokens": K * TOKENS_PER_STEP[layout],
                "layout": layout,
                "batch": B,
                "ms": {k: round(v * 1e3, 1) for k, v in times.items()},
                "speedup_vs_transformer": None
                if ref is None
                else {k: round(ref / v, 2) for k, v in times.items() if k != "transformer"},
            }
            if device.type == "cuda":
                row["peak_mb"] = {label: round(_peak_mb(fn, device), 1) for label, fn in fns.items()}
            rows.append(row)
    return {
        "benchmark": "train_step",
        "embed_dim": embed_dim,
        "n_layers": n_layers,
        "device": str(device),
        "native_bf16": has_bf16,
        "bf16_timed": bf16,
        "repeats": repeats,
        "machine": machine_info(),
        "results": rows,
    }


def _train_step_fn(
    model_cfg, data: dict, device: torch.device, amp: bool, whole_compile: bool = False, fused_adamw: bool = True
):
    """A zero-argument function taking one optimizer step of a fresh DecisionModel (seed 0) on `data`."""

    torch.manual_seed(0)
    model = DecisionModel(11, 3, model_cfg).to(device).train()
    fused = FUSED_ADAMW if fused_adamw else None  # as update.adamw builds it, or torch's per-tensor loop
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4, fused=fused)
    forward = torch.compile(model) if whole_compile else model

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = masked_mse(forward(data), data["act"], data["mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def profile_train_step(
    backbones=("mingru", "minlstm", "transformer"),
    layout="interleaved",
    K=20,
    batch=64,
    amp=False,
    dropout_impl="torch",
    steps=10,
    top=15,
    device="cpu",
    embed_dim=128,
    n_layers=3,
) -> dict:
    """Where one DT-size training step goes, per backbone: torch.profiler over `steps` steps (after two
    untimed ones), the `top` ops by self time with their share of the total and their call count per step."""
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    data = random_batch(batch, K, OBS_DIM, ACT_DIM, torch.float32, device=device)
    results = []
    for name in backbones:
        model_cfg = ModelConfig(name, embed_dim, n_layers, token_layout=layout, dropout_impl=dropout_impl)
        step = _train_step_fn(model_cfg, data, device, amp)
        for _ in range(2):
            step()
        _sync(device)
        with profile(activities=activities) as prof:
            for _ in range(steps):
                step()
            _sync(device)
        events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
        ops = [
            {
                "op": e.key,
                "percent": round(100 * e.self_cpu_time_total / total, 1),
                "ms_per_step": round(e.self_cpu_time_total / 1e3 / steps, 2),
                "calls_per_step": round(e.count / steps, 1),
            }
            for e in events[:top]
        ]
        results.append({"backbone": name, "ms_per_step": round(total / 1e3 / steps, 1), "ops": ops})
    return {
        "benchmark": "profile_train_step",
        "layout": layout,
        "K": K,
        "batch": batch,
        "amp": "bf16" if amp else "none",
        "dropout_impl": dropout_impl,
        "steps": steps,
        "device": str(device),
        "machine": machine_info(),
        "results": results,
    }


def bench_seed_group(
    n_seeds=5,
    backbones=("mingru", "minlstm", "transformer"),
    layouts=("fused", "interleaved"),
    K=20,
    batch=64,
    repeats=5,
    device="cpu",
) -> dict:
    """N seeds' training steps (forward, backward, clip, AdamW) taken one model after another, against one
    seed-group step of the same N models (update.SeedGroup, what train.seeds runs), timed round-robin.
    DT-size models (embed 128, 3 layers), Hopper dims. speedup = sequential / group."""

    device = torch.device(device)
    results = []
    for backbone in backbones:
        for layout in layouts:
            cfg = ModelConfig(backbone=backbone, token_layout=layout)
            models = [DecisionModel(11, 3, cfg).to(device) for _ in range(n_seeds)]
            opts = [torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=1e-4, fused=FUSED_ADAMW) for m in models]
            batches = [
                random_batch(batch, K, OBS_DIM, ACT_DIM, torch.float32, seed=i, device=device) for i in range(n_seeds)
            ]
            group = SeedGroup(models, opts, grad_clip=0.25)

            def sequential():
                for m, o, b in zip(models, opts, batches):
                    optimizer_step(masked_mse(m(b), b["act"], b["mask"]), m, o, 0.25)

            def grouped():
                group.step(group.losses(batches))

            t = time_interleaved({"sequential": sequential, "group": grouped}, repeats, device, warmup=2)
            results.append(
                {
                    "backbone": backbone,
                    "layout": layout,
                    "seeds": n_seeds,
                    "K": K,
                    "batch": batch,
                    "ms": {k: round(v * 1e3, 1) for k, v in t.items()},
                    "speedup": round(t["sequential"] / t["group"], 2),
                }
            )
    return {"machine": machine_info(), "device": str(device), "threads": torch.get_num_threads(), "results": results}


@torch.no_grad()
def bench_inference(
    contexts=(20, 100),
    n_envs=(1, 10),
    steps=100,
    backbone="mingru",
    layout="interleaved",
    repeats=3,
    device="cpu",
    embed_dim=128,
    n_layers=3,
    threads=(1, 2),
) -> dict:
    """Per-env-step model time: the recurrent DecisionModel.step with a carried state vs DT's window (re-run the
    last K steps). The window is measured at steady state (history already K long). On CPU each thread count is measured
    (rollouts run with 1, as acting.cpu_threads sets; the window's larger ops may prefer 2)."""

    device = torch.device(device)
    torch.manual_seed(0)
    model = DecisionModel(11, 3, ModelConfig(backbone, embed_dim, n_layers, token_layout=layout)).to(device).eval()
    rows = []
    for n, n_threads in [(n, th) for n in n_envs for th in (threads if device.type == "cpu" else (None,))]:
        obs = torch.randn(n, 11, device=device)
        rtg = torch.randn(n, 1, device=device)
        prev = torch.rand(n, 3, device=device)

        def recurrent():
            state = model.initial_state(n, device)
            for t in range(steps):
                first = torch.full((n,), t == 0, device=device)
                _, state = model.step(obs, rtg, torch.full((n,), t, device=device), prev, first, state)

        fns = {"recurrent": recurrent}
        for K in contexts:
            window = random_batch(n, K, OBS_DIM, ACT_DIM, torch.float32, device=device)

            def windowed(window=window):
                for _ in range(steps):
                    model(window)

            fns[f"window_K{K}"] = windowed
        with cpu_threads(n_threads or 1, device):
            times = time_interleaved(fns, repeats, device)
        per_step = {k: v / steps * 1e3 for k, v in times.items()}
        rows.append(
            {
                "n_envs": n,
                "threads": n_threads,
                "ms_per_step": {k: round(v, 3) for k, v in per_step.items()},
                "recurrent_speedup": {
                    k: round(v / per_step["recurrent"], 1) for k, v in per_step.items() if k != "recurrent"
                },
            }
        )
    return {
        "benchmark": "inference",
        "backbone": backbone,
        "layout": layout,
        "embed_dim": embed_dim,
        "n_layers": n_layers,
        "device": str(device),
        "machine": machine_info(),
        "results": rows,
    }


def bench_sampler(source, contexts=(20, 200), batch=64, repeats=50) -> dict:
    """Time to draw one batch from the window sampler on a real dataset."""

    dataset = load_source(source)
    norm = ObsNormalizer.fit(dataset.episodes)
    rows = []
    for K in contexts:
        sampler = WindowSampler(dataset, norm, K, batch, seed=0)
        times = time_interleaved({"sample": sampler.sample}, repeats, torch.device("cpu"))
        rows.append({"K": K, "batch": batch, "ms_per_batch": round(times["sample"] * 1e3, 3)})
    episode = WindowSampler(dataset, norm, 0, batch, mode="episode", seed=0)
    times = time_interleaved({"sample": episode.sample}, max(3, repeats // 10), torch.device("cpu"))
    rows.append(
        {"K": episode.context_len, "mode": "episode", "batch": batch, "ms_per_batch": round(times["sample"] * 1e3, 3)}
    )
    return {
        "benchmark": "sampler",
        "source": source,
        "steps": dataset.num_steps,
        "machine": machine_info(),
        "results": rows,
    }


def bench_policy_latency(
    n_envs=(1, 10),
    steps=200,
    repeats=5,
    embed_dim=128,
    n_layers=3,
    backbone="mingru",
    layout="interleaved",
    window_K=20,
    onnx=True,
    compiled=True,
) -> dict:
    """What a controller pays per environment step, raw observation in, clipped action out, 1 CPU thread:

    * torch_model_act: DecisionModel.step alone (the inner call before the Policy existed; no normalization,
      no bookkeeping), as a reference;
    * torch_recurrent: Policy.act, recurrent (what `evaluate` runs);
    * torch_recurrent_compiled: Policy(compile=True).act (its one-off compile is reported apart);
    * onnxruntime_recurrent: onnx_runner.OnnxPolicy.act on the exported step (numpy + onnxruntime);
    * torch_window_K20: Policy.act in DT's window mode;
    * mujoco_step: the physics the model is weighed against, Hopper-v5's env.step for each of the N envs
      (zero actions, an env reset where an episode ends), as the evaluator steps them.
    The ratios model_over_mujoco put every path beside that step, measured round-robin in the same run.
    The model is DT-size (embed 128, 3 layers) with Hopper's dims and random weights: speed does not depend
    on what was learned."""
    from pathlib import Path

    device = torch.device("cpu")
    env_id = "Hopper-v5"
    torch.manual_seed(0)
    model = DecisionModel(11, 3, ModelConfig(backbone, embed_dim, n_layers, token_layout=layout)).eval()
    norm = ObsNormalizer(np.zeros(11, np.float32), np.ones(11, np.float32))
    low, high = -np.ones(3, np.float32), np.ones(3, np.float32)

    data = DataInfo("bench", 11, 3, norm, env_id=env_id)

    def policy(mode, compile=False):
        return Policy(
            model, data, 3600.0, context_len=window_K, mode=mode, device=device, clip_to_env=True, compile=compile
        )

    policies = {"torch_recurrent": policy("recurrent"), "torch_window_K20": policy("window")}
    compile_s = None
    if compiled:
        policies["torch_recurrent_compiled"] = policy("recurrent", compile=True)
    tmp = tempfile.TemporaryDirectory()
    if onnx:
        path = Path(tmp.name) / "step.onnx"
        write_onnx(
            model,
            path,
            {
                "env_id": "Hopper-v5",
                "obs_mean": norm.mean.tolist(),
                "obs_std": norm.std.tolist(),
                "rtg_scale": 1000.0,
                "target_returns": [3600.0],
                "action_low": low.tolist(),
                "action_high": high.tolist(),
            },
        )
        policies["onnxruntime_recurrent"] = OnnxPolicy(path, threads=1)
    rows = []
    rng = np.random.default_rng(0)
    for n in n_envs:
        obs = rng.normal(size=(steps, n, 11)).astype(np.float32)
        reward = np.ones(n)

        def episode(p):
            def run():
                p.reset(n)
                for t in range(steps):
                    p.act(obs[t], None if t == 0 else reward)

            return run

        fns = {name: episode(p) for name, p in policies.items()}
        if "torch_recurrent_compiled" in fns:
            start = time.perf_counter()
            fns["torch_recurrent_compiled"]()  # compiles for this batch size
            compile_s = round(time.perf_counter() - start, 2)
        obs_t, rtg, prev = torch.randn(n, 11), torch.randn(n, 1), torch.rand(n, 3)

        def model_act():
            with torch.inference_mode():
                state = model.initial_state(n)
                for t in range(steps):
                    _, state = model.step(obs_t, rtg, torch.full((n,), t), prev, torch.full((n,), t == 0), state)

        envs = [make_env(env_id) for _ in range(n)]
        for i, env in enumerate(envs):
            env.reset(seed=i)
        zero = np.zeros(3, np.float32)

        def mujoco_step():
            for _ in range(steps):
                for env in envs:
                    _, _, terminated, truncated, _ = env.step(zero)
                    if terminated or truncated:
                        env.reset()

        fns = {"torch_model_act": model_act, **fns, "mujoco_step": mujoco_step}
        with cpu_threads(1, device):
            times = time_interleaved(fns, repeats, device)
        for env in envs:
            env.close()
        ms = {k: v / steps * 1e3 for k, v in times.items()}
        row = {
            "n_envs": n,
            "threads": 1,
            "ms_per_step": {k: round(v, 4) for k, v in ms.items()},
            "speedup_vs_torch_recurrent": {
                k: round(ms["torch_recurrent"] / v, 2)
                for k, v in ms.items()
                if k not in ("torch_recurrent", "mujoco_step")
            },
            "model_over_mujoco": {k: round(v / ms["mujoco_step"], 2) for k, v in ms.items() if k != "mujoco_step"},
        }
        if compile_s is not None:
            row["compile_s"] = compile_s
        rows.append(row)
    tmp.cleanup()
    return {
        "benchmark": "policy_latency",
        "backbone": backbone,
        "layout": layout,
        "embed_dim": embed_dim,
        "n_layers": n_layers,
        "steps": steps,
        "machine": machine_info(),
        "results": rows,
    }
