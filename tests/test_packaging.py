"""The package as a user installs it: a built wheel in a fresh virtual environment, used from a directory
that is not the repository. Packaged configs, their packaged data, --version and python -m."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_runs_the_quickstart_from_anywhere(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)], check=True)
    (wheel,) = dist.glob("decision_minrnn-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies (torch, gymnasium, ...) come from this test environment's site-packages, added as a plain
    # path: its .pth files (among them the editable install of this checkout) are not processed.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)], check=True
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cli = [str(venv / "bin" / "decision-minrnn")]

    def run(*args):
        return subprocess.run([*cli, *args], cwd=work, env=env, check=True, capture_output=True, text=True).stdout

    where = subprocess.run(
        [str(py), "-c", "import decision_minrnn; print(decision_minrnn.__file__)"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(venv)), where  # the wheel, not this checkout
    assert run("--version").strip() == "decision-minrnn 0.1.0"
    listing = json.loads(run("configs", "--json"))
    assert "quickstart" in listing["configs"] and "bench-cpu-converged" in listing["grids"]
    assert listing["root"].startswith(str(venv))
    out = run(
        "train",
        "--config",
        "quickstart",
        "--no-progress",
        "--set",
        "train.steps=4",
        "--set",
        "train.warmup_steps=1",
        "--set",
        "train.eval_every=0",
        "--set",
        "eval.episodes=1",
        "--set",
        "eval.max_steps=20",
    )
    assert "normalized score:" in out and (work / "runs" / "quickstart" / "final.json").is_file()
    module = subprocess.run(
        [str(py), "-m", "decision_minrnn", "--help"], cwd=work, env=env, check=True, capture_output=True, text=True
    ).stdout
    assert "Decision-Transformer-style offline RL" in module


def test_packaged_names_and_pkg_paths(tmp_path, monkeypatch):
    from decision_minrnn.config import load_config
    from decision_minrnn.resources import find_config, package_dir

    monkeypatch.chdir(tmp_path)
    cfg = load_config("quickstart")
    assert cfg.data.source == [str(package_dir() / "assets" / "hopper-medium-bench-slice.hdf5")]
    assert find_config("bench/hopper-medium").name == "hopper-medium.yaml"
    assert find_config("bench-cpu", "grid").parent.name == "grids"
    # A relative hdf5 path resolves against the config file's directory when the file is there.
    (tmp_path / "cfgs").mkdir()
    data = tmp_path / "cfgs" / "mine.hdf5"
    data.write_bytes(b"")
    (tmp_path / "cfgs" / "c.yaml").write_text("data:\n  source: mine.hdf5+other/x.hdf5\n")
    assert load_config(tmp_path / "cfgs" / "c.yaml").data.source == [str(data), "other/x.hdf5"]


def test_unknown_config_names_say_where_to_look(tmp_path, capsys):
    from decision_minrnn.cli import main

    assert main(["train", "--config", "quickstrat"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "decision-minrnn configs" in err
    assert main(["train", "--config", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def _actions(parser, path=()):
    """(command path, action) of every option and positional of a parser and its subcommands."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, (*path, name))
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield path, action


def test_every_cli_option_has_help_text_and_shows_its_default():
    """Issue 38: `--help` has no option without text, and every option with a default says it."""
    from decision_minrnn.cli import build_parser
    from decision_minrnn.onnx_runner import build_parser as runner_parser

    for parser, name in ((build_parser(), "decision-minrnn"), (runner_parser(), "onnx_runner")):
        missing = [f"{name} {' '.join(path)} {action.dest}" for path, action in _actions(parser) if not action.help]
        assert not missing, missing
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    text = " ".join(sub.choices["sweep"].format_help().split())
    assert "(default: runs/sweeps)" in text and "(default: 1)" in text  # --runs-root, --cpus-per-run
    assert "examples:" in parser.format_help() and "decision-minrnn train --config quickstart" in parser.format_help()
    runner = " ".join(runner_parser().format_help().split())
    assert "(default: 10)" in runner and "(default: 1000)" in runner and "(default: None)" not in runner
