"""The `decision-minrnn` command. Each subcommand lives in the module that does its job; this file only
parses arguments and turns user errors into one line on stderr with exit code 2."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import guarded


def _cmd_datasets_info(args) -> int:
    from .data.episodes import load_source
    from .envs.make import check_data_fits_env

    dataset = load_source(args.source, env_id=args.env_id, env_version=args.env_version)
    if dataset.env_id:  # what train checks before its first step; the values were checked on loading
        check_data_fits_env(dataset, dataset.env_id)
    info = dataset.describe()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"dataset      {info['name']}")
    print(f"episodes     {info['episodes']}  (terminated {info['terminated_episodes']})")
    print(f"steps        {info['steps']}")
    print(f"obs / act    {info['obs_dim']} / {info['act_dim']}")
    length = info["episode_length"]
    print(f"length       min {length['min']}  mean {length['mean']:.1f}  max {length['max']}")
    ret = info["return"]
    print(f"return       min {ret['min']:.1f}  mean {ret['mean']:.1f}  max {ret['max']:.1f}")
    print(f"env          {info['env_id']}")
    if info["normalized_behaviour_score"] is not None:
        ref = info["reference_scores"]
        print(
            f"normalized   {info['normalized_behaviour_score']:.1f}  "
            f"(refs {ref['min']:.1f} / {ref['max']:.1f}, from {ref['source']})"
        )
    return 0


def _cmd_datasets_list(args) -> int:
    import minari

    from .data.episodes import minari_root

    local = minari.list_local_datasets()
    if args.json:
        print(
            json.dumps(
                {
                    "root": minari_root(),
                    "datasets": {
                        k: {"episodes": v.get("total_episodes"), "steps": v.get("total_steps")}
                        for k, v in local.items()
                    },
                },
                indent=1,
            )
        )
        return 0
    print(f"Minari datasets under {minari_root()}:")
    for name, meta in sorted(local.items()):
        print(f"  {name:45s} {meta.get('total_episodes', '?'):>6} episodes {meta.get('total_steps', '?'):>9} steps")
    if not local:
        print("  (none)")
    return 0


def _cmd_configs(args) -> int:
    from .resources import configs_dir, packaged_configs

    listing = packaged_configs()
    if args.json:
        print(json.dumps({"root": str(configs_dir()), **listing}, indent=1))
        return 0
    print(f"packaged configs (decision-minrnn train --config NAME), in {configs_dir()}:")
    for name in listing["configs"]:
        print(f"  {name}")
    print("packaged grids (decision-minrnn sweep --grid NAME):")
    for name in listing["grids"]:
        print(f"  {name}")
    return 0


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help where it has one, and the examples kept as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if default in (None, False, [], argparse.SUPPRESS) or "default" in text or action.option_strings == []:
            return text
        return f"{text} (default: {default})"


class _Parser(argparse.ArgumentParser):
    """The parser of every command and subcommand (subparsers are made of their parent's class)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


EXAMPLES = """examples:
  decision-minrnn train --config quickstart                   # a few minutes on 2 CPU cores
  decision-minrnn evaluate --checkpoint runs/quickstart --episodes 10
  decision-minrnn train --config bench/hopper-medium --set data.observe=velocities --set train.steps=5000 \\
      --set train.warmup_steps=500
  decision-minrnn sweep --grid bench-cpu --set train.steps=2000
  decision-minrnn report runs/sweeps/bench-cpu
  decision-minrnn configs                                     # the packaged configs and grids
"""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="decision-minrnn",
        description="Decision-Transformer-style offline RL with minGRU / minLSTM backbones: train on D4RL-style "
        "datasets, evaluate in Gymnasium MuJoCo, export, sweep and report.",
        epilog=EXAMPLES,
    )
    parser.add_argument("--version", action="version", version=f"decision-minrnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    datasets = sub.add_parser("datasets", help="inspect offline datasets")
    dsub = datasets.add_subparsers(dest="datasets_command", required=True)
    info = dsub.add_parser("info", help="describe a Minari id, a D4RL hdf5 file, or 'a+b' compositions")
    info.add_argument("source", nargs="+", help="Minari id or D4RL hdf5 path; several (or a+b) are concatenated")
    info.add_argument("--env-id", default=None, help="Gymnasium env id to evaluate in (default: from the data)")
    info.add_argument("--env-version", default="v5", help="MuJoCo env version for D4RL files (v5 or v4)")
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    info.set_defaults(func=_cmd_datasets_info)
    listing = dsub.add_parser("list", help="list local Minari datasets (MINARI_DATASETS_PATH)")
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    listing.set_defaults(func=_cmd_datasets_list)

    configs = sub.add_parser("configs", help="list the configs and grids shipped in the package")
    configs.add_argument("--json", action="store_true", help="print the names as JSON")
    configs.set_defaults(func=_cmd_configs)

    from . import commands

    commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
