"""The scripts under scripts/ keep the CLI's contract (issue 36, class 7): bad input is one line and exit code 2,
never a traceback and never exit 0; a side file that does not pair with its run is refused."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import fake_run

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
PROTOCOL = {"test_episodes": 100, "test_seed": 1000000, "selection_episodes": 10, "selection_seed": 0}


def run_script(name, *args):
    done = subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True)
    return done.returncode, done.stderr.strip()


def runs_with(root: Path, file_name: str, content: str, **extra) -> Path:
    for seed in range(2):
        for backbone in ("mingru", "transformer"):
            run = fake_run(root, "hopper-medium", backbone, seed, 40.0 + seed, eval_protocol=PROTOCOL, **extra)
            (run / file_name).write_text(content)
    return root


@pytest.mark.slow  # fresh interpreters
@pytest.mark.parametrize(
    "script,args,message",
    [
        ("target_rule.py", ["measure", "/no/such/dir"], "runs directory /no/such/dir does not exist"),
        ("target_rule.py", ["compare", "/no/such/dir"], "runs directory /no/such/dir does not exist"),
        ("fit_windows.py", ["measure", "/no/such/dir"], "runs directory /no/such/dir does not exist"),
        ("memory_study.py", ["measure", "/no/such/dir"], "/no/such/dir is not a directory"),
    ],
)
def test_a_missing_runs_directory_is_one_line_and_exit_2(script, args, message):
    code, err = run_script(script, *args)
    assert code == 2 and err == f"error: {message}", err


@pytest.mark.slow
@pytest.mark.parametrize(
    "script,file_name,content,message",
    [
        ("target_rule.py", "target_rule.json", '{"rule": "best-ep', "target_rule.json is unreadable"),
        ("fit_windows.py", "fit_windows.json", "[1, 2]", "fit_windows.json does not hold a JSON object"),
        (
            "target_rule.py",
            "target_rule.json",
            json.dumps({"normalized_mean": 1.0, "target_return": 2.0, "step": 3, "episodes": 100, "seed": 1000000}),
            "scored step 3 on 100 episodes from seed 1000000, the headline step 6",
        ),
    ],
    ids=["truncated-rule", "not-an-object", "rule-of-another-step"],
)
def test_a_side_file_that_is_broken_or_of_another_checkpoint_is_one_line(tmp_path, script, file_name, content, message):
    root = runs_with(tmp_path / "runs", file_name, content)
    args = ["compare", root] if script == "target_rule.py" else ["compare", root, root]
    code, err = run_script(script, *args)
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
