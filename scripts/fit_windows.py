"""The training fit of runs on one fixed set of windows: DT's masked action MSE of each run's last checkpoint on
1024 training windows drawn once with a fixed seed (dropout off, float32), the measure issue 22 asks for when a
setting (bf16 autocast, the fast dropout masks) must leave the fit unchanged.

    python scripts/fit_windows.py measure ~/grid-runs/bench-cpu-bf16       # writes RUN/fit_windows.json
    python scripts/fit_windows.py compare A_RUNS B_RUNS --labels float32 bf16

`measure` needs the runs' checkpoints and writes a small file beside final.json, so the measure survives the
checkpoints (commit it with the run's other small files); `compare` reads only those files. The windows depend
on the data, the context length, the observation normalization and the seed alone, never on the run, so every
run of one dataset is scored on the same windows. A fit measure, not a held-out one. It is less noisy than the
training-loss tail of scripts/loss_tail.py (one logged batch per step, dropout on). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from decision_minrnn.data.episodes import load_source
from decision_minrnn.data.sampler import WindowSampler
from decision_minrnn.errors import DataError, guarded
from decision_minrnn.experiments.collect import collect_runs, measure_runs, read_side_file
from decision_minrnn.experiments.stats import score_stats
from decision_minrnn.runs import model_from_checkpoint
from decision_minrnn.update import masked_mse

FIT_FILE = "fit_windows.json"
WINDOWS = 1024
WINDOW_SEED = 12345  # scripts/bench_peer_dt.py's fixed windows use the same seed


def fit_windows(run_dir: Path, datasets: dict) -> dict:
    """The masked MSE of run_dir's last checkpoint on the fixed windows of its data (datasets caches the loaded
    data by source, so a sweep's runs load each dataset once)."""
    ckpt, cfg, data, model = model_from_checkpoint(run_dir, "cpu")
    key = (tuple(cfg.data.source), cfg.data.env_id, cfg.data.env_version)
    if key not in datasets:
        datasets[key] = load_source(cfg.data.source, cfg.data.env_id, cfg.data.env_version)
    sampler = WindowSampler(
        datasets[key], data.obs_norm, cfg.data.context_len, WINDOWS, cfg.data.rtg_scale, cfg.data.max_ep_len,
        seed=WINDOW_SEED,
    )  # fmt: skip
    batch = sampler.sample()
    with torch.no_grad():
        mse = masked_mse(model(batch), batch["act"], batch["mask"]).item()
    return {
        "fit_windows_mse": mse,
        "windows": WINDOWS,
        "window_seed": WINDOW_SEED,
        "context_len": cfg.data.context_len,
        "step": ckpt.step,
        "amp": cfg.train.amp,
        "dropout_impl": cfg.model.dropout_impl,
    }


def measure(runs_dir: Path, force: bool) -> dict:
    runs, _ = collect_runs(runs_dir)
    datasets: dict = {}
    return measure_runs(runs, FIT_FILE, lambda run: fit_windows(Path(run.run_dir), datasets), force)


FIT_PROTOCOL = ("windows", "window_seed", "context_len")  # what makes two fits comparable


def read_fits(runs_dir: Path) -> tuple[dict[tuple[str, str], dict[int, float]], dict[tuple[str, str], tuple]]:
    """(dataset, backbone) -> {seed: fit_windows_mse}, for the runs `report` reads that have the file, and each
    cell's fit protocol (the windows, their seed, their length). A fit of another checkpoint than final.json's
    last, or a cell whose runs were fitted on different windows, is refused."""
    runs, _ = collect_runs(runs_dir)
    out: dict[tuple[str, str], dict[int, float]] = {}
    protocols: dict[tuple[str, str], tuple] = {}
    for run in runs:
        path = Path(run.run_dir) / FIT_FILE
        if not path.is_file():
            continue
        data = read_side_file(run.run_dir, FIT_FILE)
        fit = data.get("fit_windows_mse")
        if not isinstance(fit, (int, float)):
            raise DataError(f"{path} holds no fit_windows_mse; measure it again (--force)")
        if data.get("step") not in (None, run.steps):
            raise DataError(f"{path} fitted step {data['step']}, final.json's last is {run.steps}; measure it again")
        key, protocol = (run.dataset, run.backbone), tuple(data.get(k) for k in FIT_PROTOCOL)
        if protocols.setdefault(key, protocol) != protocol:
            raise DataError(f"{key[0]} / {key[1]} mixes fits on different windows ({protocols[key]} and {protocol})")
        out.setdefault(key, {})[int(run.seed)] = float(fit)
    return out, protocols


def compare(runs_a: Path, runs_b: Path, labels: list[str]) -> dict:
    (a, protocol_a), (b, protocol_b) = read_fits(runs_a), read_fits(runs_b)
    rows = []
    for key in sorted(set(a) & set(b)):
        if protocol_a[key] != protocol_b[key]:
            windows = dict(zip(FIT_PROTOCOL, protocol_a[key])), dict(zip(FIT_PROTOCOL, protocol_b[key]))
            raise DataError(
                f"{key[0]} / {key[1]}: {labels[0]} was fitted on {windows[0]}, {labels[1]} on {windows[1]}; the MSEs "
                "of different windows do not divide"
            )
        sa, sb = score_stats(list(a[key].values())), score_stats(list(b[key].values()))
        rows.append(
            {
                "dataset": key[0],
                "backbone": key[1],
                labels[0]: {"mean": sa.mean, "ci": sa.mean_ci, "seeds": a[key]},
                labels[1]: {"mean": sb.mean, "ci": sb.mean_ci, "seeds": b[key]},
                "ratio": sb.mean / sa.mean,
            }
        )
    return {"windows": WINDOWS, "window_seed": WINDOW_SEED, "labels": labels, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="write RUN/fit_windows.json for every run with a checkpoint")
    m.add_argument("runs")
    m.add_argument("--force", action="store_true", help="measure runs that already have the file again")
    c = sub.add_parser("compare", help="two runs directories' fit side by side, with the ratio B / A")
    c.add_argument("runs_a")
    c.add_argument("runs_b")
    c.add_argument("--labels", nargs=2, default=["A", "B"])
    args = parser.parse_args()
    if args.command == "measure":
        out = measure(Path(args.runs), args.force)
    else:
        out = compare(Path(args.runs_a), Path(args.runs_b), args.labels)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(guarded(main))  # the CLI's contract: one line and exit code 2 on bad input
