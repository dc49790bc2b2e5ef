"""The scripts under scripts/ keep the CLI's contract (issue 36, class 7): bad input is one line and exit code 2,
never a traceback and never exit 0; a side file that does not pair with its run is refused."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import fake_run

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
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


@pytest.mark.slow
def test_fit_windows_compare_refuses_fits_of_different_windows(tmp_path):
    """Issue 36, class 3: fit_windows.py compare divided K=20 fits by K=2 ones."""
    fit = {"fit_windows_mse": 0.03, "windows": 1024, "window_seed": 12345, "context_len": 20, "step": 6}
    a = runs_with(tmp_path / "a", "fit_windows.json", json.dumps(fit))
    b = runs_with(tmp_path / "b", "fit_windows.json", json.dumps({**fit, "context_len": 2}))
    code, err = run_script("fit_windows.py", "compare", a, b, "--labels", "K20", "K2")
    assert code == 2 and "the MSEs of different windows do not divide" in err and "'context_len': 2" in err, err
    code, _ = run_script("fit_windows.py", "compare", a, a)
    assert code == 0
