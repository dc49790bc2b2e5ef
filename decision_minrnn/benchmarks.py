"""Speed measurements shared by scripts/ and `decision-minrnn bench`. Every function returns plain dicts
(JSON-ready); ratios are taken between variants measured in the same process, interleaved, so machine
noise hits all of them alike."""

from __future__ import annotations

import platform
import time

import torch


def machine_info() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


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


def bench_scan(lengths=(20, 60, 200, 1000, 3000), batch=64, dim=128, repeats=3, device="cpu",
               loop_max_T=3000, cells=("mingru", "minlstm")) -> dict:
    """Forward+backward of one layer: minGRU/minLSTM by each scan method and by a loop of step(),
    against torch.nn.GRU of the same width (oneDNN/cuDNN fused)."""
    from .nn import MinGRU, MinLSTM

    device = torch.device(device)
    classes = {"mingru": MinGRU, "minlstm": MinLSTM}
    results = []
    for T in lengths:
        x = torch.randn(batch, T, dim, device=device, requires_grad=True)
        gru = torch.nn.GRU(dim, dim, batch_first=True).to(device)
        fns = {"nn_gru": lambda: gru(x)[0].sum().backward()}
        for cell_name in cells:
            methods = ["sequential", "chunked", "log"]
            for method in methods:
                cell = classes[cell_name](dim, scan=method).to(device)
                fns[f"{cell_name}_{method}"] = (lambda c: lambda: c(x)[0].sum().backward())(cell)
            if T <= loop_max_T:
                loop_cell = classes[cell_name](dim).to(device)

                def step_loop(c=loop_cell):
                    h, ys = None, []
                    for t in range(T):
                        y, h = c.step(x[:, t], h)
                        ys.append(y)
                    torch.stack(ys, 1).sum().backward()

                fns[f"{cell_name}_step_loop"] = step_loop
        times = time_interleaved(fns, repeats, device)
        row = {"T": T, "ms": {k: round(v * 1e3, 2) for k, v in times.items()}, "ratios": {}}
        for cell_name in cells:
            best = min(times[f"{cell_name}_{m}"] for m in ("sequential", "chunked", "log"))
            best_name = min(("sequential", "chunked", "log"), key=lambda m: times[f"{cell_name}_{m}"])
            row[f"{cell_name}_fastest_scan"] = best_name
            row["ratios"][f"{cell_name}_auto_vs_nn_gru_speedup"] = round(times["nn_gru"] / times[f"{cell_name}_sequential"], 2)
            if f"{cell_name}_step_loop" in times:
                row["ratios"][f"{cell_name}_auto_vs_step_loop_speedup"] = round(
                    times[f"{cell_name}_step_loop"] / times[f"{cell_name}_sequential"], 2)
            row["ratios"][f"{cell_name}_auto_vs_log_speedup"] = round(times[f"{cell_name}_log"] / times[f"{cell_name}_sequential"], 2)
            del best
        results.append(row)
    return {"benchmark": "scan", "batch": batch, "dim": dim, "device": str(device), "repeats": repeats,
            "machine": machine_info(), "results": results}
