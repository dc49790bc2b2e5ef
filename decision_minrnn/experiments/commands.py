"""Subcommands sweep, report, compare and bench."""

from __future__ import annotations

import json

from ..choices import DROPOUT_IMPLS, TOKEN_LAYOUTS
from .stats import DEFAULT_REPS


def cmd_sweep(args) -> int:
    from .sweep import sweep

    summary = sweep(
        args.grid,
        runs_root=args.runs_root,
        address=args.address,
        max_parallel=args.max_parallel,
        threads_per_run=args.threads_per_run,
        use_ray=not args.no_ray,
        seed_groups=args.seed_groups,
        storage=args.storage,
        gpus_per_run=args.gpus_per_run,
        overrides=args.set,
    )
    print(
        f"sweep {summary['grid']}: ran {summary['ran']}, skipped {summary['skipped']} finished, "
        f"failed {summary['failed']} -> {summary['root']}"
    )
    return 1 if summary["failed"] else 0


def cmd_report(args) -> int:
    from .report import report

    result = report(
        args.runs_dir, args.out, reps=args.reps, datasets=args.datasets, part_references=args.part_references
    )
    print(result["table"])
    for name, path in result["files"].items():
        print(f"{name}: {path}")
    return 0


def cmd_compare(args) -> int:
    from .report import compare

    result = compare(args.runs_a, args.runs_b, labels=args.labels, out=args.out, reps=args.reps)
    print(result["table"])
    for name, path in result["files"].items():
        print(f"{name}: {path}")
    return 0


def cmd_bench(args) -> int:
    from ..benchmarks import (
        bench_inference,
        bench_policy_latency,
        bench_scan,
        bench_seed_group,
        bench_train_step,
        machine_info,
    )
    from ..device import resolve_device

    args.device = str(resolve_device(args.device, "--device"))  # one line for --device foo or missing CUDA
    quick = args.quick
    out = {"machine": machine_info(), "quick": quick}
    if args.profile:
        return _bench_profile(args, out)
    if args.latency:
        out["latency"] = bench_policy_latency(
            steps=100 if quick else 300, repeats=3 if quick else 7, onnx=_have_onnx()
        )["results"]
        if args.json:
            print(json.dumps(out, indent=1))
        else:
            _print_latency(out["latency"])
        return 0
    out["scan"] = bench_scan(
        lengths=(60, 1000) if quick else (20, 60, 200, 1000, 3000),
        repeats=1 if quick else 3,
        device=args.device,
        loop_max_T=1000,
    )["results"]
    out["train_step"] = bench_train_step(
        contexts=(20, 200) if quick else (20, 200, 1000), repeats=1 if quick else 3, device=args.device
    )["results"]
    out["seed_group"] = bench_seed_group(
        n_seeds=2 if quick else 5,
        backbones=("mingru",) if quick else ("mingru", "minlstm", "transformer"),
        layouts=("fused",) if quick else ("fused", "interleaved"),
        repeats=1 if quick else 5,
        device=args.device,
    )["results"]
    out["inference"] = bench_inference(steps=30 if quick else 100, repeats=1 if quick else 3, device=args.device)[
        "results"
    ]
    out["latency"] = bench_policy_latency(
        steps=50 if quick else 300, repeats=1 if quick else 7, onnx=_have_onnx(), compiled=not quick
    )["results"]
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"machine: {out['machine']}")
    print("scan, forward+backward, B=64 D=128 (ms):")
    for row in out["scan"]:
        print(f"  T={row['T']:<5} {row['ms']}")
        print(f"          ratios {row['ratios']}")
    print("training step (ms):")
    for row in out["train_step"]:
        print(f"  K={row['K']:<5} {row['layout']:11s} B={row['batch']:<3} {row['ms']}")
        if "peak_mb" in row:  # CUDA only
            print(f"          peak MiB {row['peak_mb']}")
    print("seed group: N seeds stepped one after another vs as one group (ms):")
    for row in out["seed_group"]:
        print(f"  {row['backbone']:11s} {row['layout']:11s} N={row['seeds']} {row['ms']} speedup {row['speedup']}")
    print("inference per env step (ms):")
    for row in out["inference"]:
        print(
            f"  envs={row['n_envs']:<3} threads={row['threads']}  {row['ms_per_step']}  "
            f"recurrent speed-up {row['recurrent_speedup']}"
        )
    _print_latency(out["latency"])
    return 0


def _bench_profile(args, out: dict) -> int:
    from ..benchmarks import profile_train_step

    result = profile_train_step(
        layout=args.layout,
        amp=args.amp == "bf16",
        dropout_impl=args.dropout_impl,
        steps=3 if args.quick else 10,
        device=args.device,
    )
    out["profile"] = result
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"machine: {out['machine']}")
    print(
        f"one training step, K={result['K']} B={result['batch']} {result['layout']}, amp={result['amp']}, "
        f"dropout_impl={result['dropout_impl']}, mean of {result['steps']} steps (torch.profiler, self time):"
    )
    for row in result["results"]:
        print(f"  {row['backbone']}: {row['ms_per_step']} ms per step")
        for op in row["ops"]:
            calls = f"{op['calls_per_step']:7.1f} calls"
            print(f"    {op['percent']:5.1f}%  {op['ms_per_step']:7.2f} ms  {calls}  {op['op']}")
    return 0


def _have_onnx() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


def _print_latency(rows) -> None:
    print("policy latency per env step, raw obs in, action out, 1 thread (ms):")
    for row in rows:
        print(f"  envs={row['n_envs']:<3} {row['ms_per_step']}")
        print(f"          speed-up vs torch_recurrent {row['speedup_vs_torch_recurrent']}")
        print(f"          time over MuJoCo's step {row['model_over_mujoco']}")


def register(sub) -> None:
    sw = sub.add_parser("sweep", help="run a grid of datasets x backbones x seeds on Ray")
    sw.add_argument(
        "--grid",
        required=True,
        help="grid YAML, or a packaged grid name such as bench-cpu (see `decision-minrnn configs`)",
    )
    sw.add_argument(
        "--runs-root", default="runs/sweeps", help="runs go to RUNS_ROOT/<grid name>/<dataset>/<arm>/seed<N>"
    )
    sw.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    sw.add_argument("--max-parallel", type=int, default=None, help="runs at once on a local Ray (default: one per CPU)")
    sw.add_argument(
        "--cpus-per-run",
        "--threads-per-run",
        dest="threads_per_run",
        metavar="N",
        type=int,
        default=1,
        help="CPUs Ray reserves for each run, which are also its torch threads",
    )
    sw.add_argument(
        "--gpus-per-run",
        metavar="F",
        type=float,
        default=0.0,
        help="GPU share Ray reserves for each run (0.25: four runs share one GPU); runs then train on CUDA",
    )
    sw.add_argument(
        "--storage",
        default=None,
        help="where runs keep their checkpoints on a cluster without a shared filesystem (a path, or an fsspec "
        "URI such as s3://bucket/dir): workers train in scratch space, resume from it after losing a node, and "
        "send each run's files back to RUNS_ROOT on the driver",
    )
    sw.add_argument("--no-ray", action="store_true", help="run sequentially in this process, without Ray")
    sw.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a dotted override for every run of the grid, applied after the grid's own (repeatable), "
        "e.g. --set train.steps=2000",
    )
    sw.add_argument(
        "--seed-groups",
        action="store_true",
        help="train the pending seeds of each dataset x backbone together in one process (train.seeds); "
        "slower than separate runs on CPU (docs/speed.md section 10), meant for a GPU",
    )
    sw.set_defaults(func=cmd_sweep)

    rp = sub.add_parser("report", help="tables and plots from a sweep's runs")
    rp.add_argument("runs_dir", help="a folder of finished runs (a sweep's RUNS_ROOT/<grid name>)")
    rp.add_argument("--out", default=None, help="output directory (default: RUNS_DIR/report)")
    rp.add_argument("--reps", type=int, default=DEFAULT_REPS, help="bootstrap resamples for the 95%% intervals")
    rp.add_argument(
        "--datasets", nargs="+", metavar="LABEL", default=None, help="only these datasets (e.g. a grid's finished ones)"
    )
    rp.add_argument(
        "--part-references",
        action="store_true",
        help="draw each part's mean episode on the conditioning curves of a composed dataset (medium-expert: "
        "the medium and the expert level); loads the parts, so the data must be where training found it",
    )
    rp.set_defaults(func=cmd_report)

    cp = sub.add_parser(
        "compare",
        help="two runs directories side by side (an ablation): means with intervals, P(A > B), rank test",
    )
    cp.add_argument("runs_a", help="the first folder of finished runs (side A)")
    cp.add_argument("runs_b", help="the second folder of finished runs (side B)")
    cp.add_argument("--labels", nargs=2, default=["A", "B"], metavar=("A", "B"), help="names of the two sides")
    cp.add_argument("--out", default=None, help="also write comparison.md and comparison.json here")
    cp.add_argument("--reps", type=int, default=DEFAULT_REPS, help="bootstrap resamples for the 95%% intervals")
    cp.set_defaults(func=cmd_compare)

    bn = sub.add_parser("bench", help="speed suite: scan, training step, seed group, inference (ratios from one run)")
    bn.add_argument("--quick", action="store_true", help="fewer sizes and repeats: a smoke run in about a minute")
    bn.add_argument("--json", action="store_true", help="print the results as JSON instead of the tables")
    bn.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    bn.add_argument(
        "--latency",
        action="store_true",
        help="only the policy latency table (torch, compiled torch, onnxruntime, window; batch 1 and 10)",
    )
    bn.add_argument(
        "--profile",
        action="store_true",
        help="only the op breakdown of one DT-size training step per backbone (torch.profiler)",
    )
    bn.add_argument("--layout", choices=TOKEN_LAYOUTS, default="interleaved", help="token layout for --profile")
    bn.add_argument("--amp", choices=("none", "bf16"), default="none", help="autocast for --profile")
    bn.add_argument("--dropout-impl", choices=DROPOUT_IMPLS, default="torch", help="dropout masks for --profile")
    bn.set_defaults(func=cmd_bench)
