"""Subcommands train and evaluate (and those of the experiments package): argument parsing and printing."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from .errors import ConfigError, UsageError
from .rundir import RunDir, output_lock


def _print_eval(results: list[dict]) -> None:
    for r in results:
        line = (
            f"target {r['target_return']:>8.0f}  mode {r['mode']:9s}  return {r['return_mean']:8.1f} "
            f"+/- {r['return_std']:6.1f}"
        )
        if r.get("normalized_mean") is not None:
            line += (
                f"  normalized {r['normalized_mean']:6.1f} +/- {r['normalized_std']:5.1f}"
                f"  (reference scores: {r['score_reference']})"
            )
        print(line)
        timing = r.get("timing")
        if timing:
            episodes = f"{r['episodes']} episode" + ("s" if r["episodes"] != 1 else "")
            print(
                f"  {episodes}, {r['env_steps']} env steps; time in model {timing['model_seconds']:.2f} s,"
                f" in MuJoCo {timing['env_seconds']:.2f} s"
            )
        if r.get("video"):
            print(f"  video of the first episode: {r['video']}")


def cmd_train(args) -> int:
    from .config import load_config
    from .train import train

    run = RunDir(args.run_dir) if args.run_dir else None
    if args.resume and args.config is not None and run is not None and run.resumable:
        raise ConfigError(
            "--resume continues the run with its own config.yaml; --config would be ignored, so it "
            "is refused (change settings with --set, e.g. --set train.steps=20000)"
        )
    if args.config is None and not (args.resume and run is not None):
        raise UsageError("train needs --config FILE (or --resume --run-dir DIR to continue a run)")
    # --resume --run-dir DIR: the run's own config, built once by train() from its checkpoint and --set
    cfg = None if args.config is None else load_config(args.config, args.set)
    run_dir = run.root if run is not None else Path(args.runs_root) / cfg.name
    summary = train(
        cfg,
        run_dir,
        resume=args.resume,
        force=args.force,
        overrides=list(args.set),
        progress=not args.no_progress,
        stop_at=args.stop_at,
    )
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    runs = {run_dir: summary}
    if "seeds" in summary:
        runs = {RunDir(run_dir).member(seed).root: s for seed, s in summary["seeds"].items()}
    for path, run in runs.items():
        if not run.get("finished"):
            print(
                f"run {path}: stopped at step {run['step']} of {run['steps']} with a checkpoint; continue with "
                f"decision-minrnn train --resume --run-dir {run_dir}"
            )
            continue
        if "eval" not in run:
            continue
        print(f"run {path}: {run['step']} steps, final loss {run['final_loss']:.4f}")
        _print_eval(run["eval_all_targets"])
        score = run["eval"]["normalized_mean"]
        if score is not None:
            target, reference = run["eval"]["target_return"], run["eval"]["score_reference"]
            print(f"normalized score: {score:.1f} (target {target:.0f}, {reference})")
    return 0


EVAL_SETTINGS = {"episodes": "episodes", "mode": "mode", "seed": "seed", "max_steps": "max_steps"}
EVAL_SETTINGS["target_returns"] = "target_return"


def _apply_eval_sets(args) -> None:
    """evaluate --set eval.KEY=VALUE, as train takes --set: the same names as the config's eval section. A flag
    given as well wins (it is the more specific of the two)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for item in args.set:
        key, _, value = item.partition("=")
        name = key.removeprefix("eval.")
        if not key.startswith("eval.") or name not in EVAL_SETTINGS or not _:
            raise UsageError(
                f"evaluate --set {item!r}: takes eval.KEY=VALUE with KEY one of {', '.join(EVAL_SETTINGS)}"
            )
        try:
            parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={value}"]))["v"]
        except OmegaConfBaseException as exc:
            raise UsageError(f"evaluate --set {item!r}: {exc}") from None
        if name in ("episodes", "seed", "max_steps") and (not isinstance(parsed, int) or isinstance(parsed, bool)):
            raise UsageError(f"evaluate --set {item!r}: eval.{name} must be an integer")
        if name == "target_returns":
            parsed = [str(v) for v in (parsed if isinstance(parsed, list) else [parsed])]
        if getattr(args, EVAL_SETTINGS[name]) is None:
            setattr(args, EVAL_SETTINGS[name], parsed)


def cmd_evaluate(args) -> int:
    from .evaluation import check_sweep_out, evaluate_checkpoint, sweep_file, write_sweep
    from .rollout import without_timing

    _apply_eval_sets(args)
    out = None
    if args.target_sweep is not None:
        out = Path(args.sweep_out) if args.sweep_out else sweep_file(args.checkpoint, args.best)
        check_sweep_out(out, args.force)  # before any episode runs
    elif args.sweep_out or args.force:
        raise UsageError("--sweep-out and --force are for --target-sweep")
    if not args.json:  # the start line: what is about to run, before the first episode
        from .device import resolve_device

        which = "best checkpoint" if args.best else "newest checkpoint"
        episodes = "the run's eval.episodes" if args.episodes is None else f"{args.episodes}"
        seed = "the run's eval.seed" if args.seed is None else f"seed {args.seed}"
        mode = "the run's eval.mode" if args.mode is None else args.mode
        targets = "a target sweep" if args.target_sweep is not None else "each target"
        print(
            f"evaluate {args.checkpoint} ({which}): {episodes} episodes for {targets} from {seed}, mode "
            f"{mode}, device {resolve_device(args.device, '--device')}",
            flush=True,
        )
    with output_lock(out) if out is not None else contextlib.nullcontext():
        results = evaluate_checkpoint(
            args.checkpoint,
            episodes=args.episodes,
            mode=args.mode,
            targets=args.target_return,
            seed=args.seed,
            device=args.device,
            env_id=args.env_id,
            max_steps=args.max_steps,
            video_dir=args.video,
            compile=args.compile,
            best=args.best,
            target_sweep=args.target_sweep,
            target_range=args.target_range,
        )
        if out is not None:
            results["results"] = without_timing(results["results"])
            write_sweep(out, results)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"checkpoint {results['checkpoint']} (step {results['step']}), env {results['env_id']}")
        _print_eval(results["results"])
        if out is not None:
            print(f"wrote {out} (report draws it: achieved against target return)")
    return 0


def cmd_export(args) -> int:
    from .export import export_onnx

    meta = export_onnx(args.checkpoint, args.out, force=args.force)
    print(
        f"wrote {args.out} and {Path(args.out).with_suffix('.json')} ({meta['backbone']}, {meta['token_layout']} "
        f"tokens, step {meta['step']}); run it with: python -m decision_minrnn.onnx_runner {args.out}"
    )
    return 0


def register(sub) -> None:
    train = sub.add_parser("train", help="train a decision model from a config")
    train.add_argument(
        "--config",
        help="YAML config (only what differs from the defaults), or a packaged config "
        "name such as quickstart (see `decision-minrnn configs`)",
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. --set model.backbone=minlstm (repeatable)",
    )
    train.add_argument("--run-dir", help="run directory (default: RUNS_ROOT/<config name>)")
    train.add_argument(
        "--runs-root", default="runs", help="the folder a run without --run-dir goes to, as RUNS_ROOT/<config name>"
    )
    train.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    train.add_argument("--force", action="store_true", help="replace an existing run directory")
    train.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help="stop at this step with a checkpoint, before train.steps (continue later with --resume)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--json", action="store_true", help="print the final summary as JSON")
    train.set_defaults(func=cmd_train)

    ex = sub.add_parser("export", help="write the O(1) recurrent step as ONNX (+ JSON) for use without torch")
    ex.add_argument("--checkpoint", required=True, help="run directory (newest checkpoint) or checkpoint directory")
    ex.add_argument("--out", required=True, help="output .onnx path; the .json goes beside it")
    ex.add_argument("--force", action="store_true", help="replace an earlier export at --out (never another file)")
    ex.set_defaults(func=cmd_export)

    ev = sub.add_parser("evaluate", help="roll a checkpoint out in its MuJoCo environment")
    ev.add_argument("--checkpoint", required=True, help="run directory (newest checkpoint) or checkpoint directory")
    ev.add_argument("--episodes", type=int, default=None, help="episodes per target (default: the run's eval.episodes)")
    ev.add_argument(
        "--mode",
        choices=["auto", "recurrent", "window"],
        default=None,
        help="recurrent: one O(1) step per env step from the episode start; window: DT's re-run of the last K "
        "steps; auto: recurrent where the backbone can step (default: the run's eval.mode)",
    )
    ev.add_argument(
        "--target-return",
        nargs="+",
        default=None,
        help="raw target returns, or the data's own: best-episode (its best episode's return), median-episode, "
        "mean-episode",
    )
    ev.add_argument(
        "--target-sweep",
        type=int,
        metavar="N",
        default=None,
        help="evaluate N target returns from the data's median episode return to 1.5x its best one and write "
        "them to RUN/target_sweep.json (RUN/target_sweep-best.json with --best) for report's conditioning curves",
    )
    ev.add_argument(
        "--target-range", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None, help="the sweep's range"
    )
    ev.add_argument("--sweep-out", default=None, help="write the target sweep here instead")
    ev.add_argument("--force", action="store_true", help="replace an earlier target sweep file")
    ev.add_argument("--seed", type=int, default=None, help="episode i is seeded with SEED + i")
    ev.add_argument("--max-steps", type=int, default=None, help="steps per episode (default: the run's eval.max_steps)")
    ev.add_argument("--env-id", default=None, help="evaluate in another env id (e.g. Hopper-v4)")
    ev.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    ev.add_argument(
        "--video",
        metavar="DIR",
        default=None,
        help="also write each target's first episode as an mp4 into DIR (needs the [video] extra)",
    )
    ev.add_argument(
        "--best", action="store_true", help="the run's best checkpoint (train.keep_best) instead of its newest"
    )
    ev.add_argument(
        "--compile",
        action="store_true",
        help="act through a torch.compile'd recurrent step (faster per step, equal to float32 rounding)",
    )
    ev.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    ev.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="eval.KEY=VALUE",
        help="an evaluation setting by its config name, as train takes them (eval.episodes, eval.mode, eval.seed, "
        "eval.max_steps, eval.target_returns); a flag given too wins (repeatable)",
    )
    ev.set_defaults(func=cmd_evaluate)

    from .experiments import commands as experiment_commands

    experiment_commands.register(sub)
