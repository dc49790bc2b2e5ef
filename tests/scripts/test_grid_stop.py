"""scripts/grid_stop.sh keeps the scripts' contract: bad input is one line and exit code 2, and it stops nothing it
was not asked to (a grid never started on this machine)."""

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "grid_stop.sh"


@pytest.mark.parametrize(
    "args,message",
    [([], "usage: scripts/grid_stop.sh GRID_NAME"), (["never-started"], "no "), (["a", "b"], "usage:")],
)
def test_grid_stop_refuses_with_one_line(tmp_path, args, message):
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env={"HOME": str(tmp_path)})
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1 and message in err, err


def test_grid_stop_stops_the_processes_of_its_pid_file(tmp_path):
    """A sweep stand-in that ignores SIGINT (as a busy Ray worker did) is still stopped, and the pid file goes."""
    sleeper = subprocess.Popen(["bash", "-c", "trap '' INT; sleep 300"])
    (tmp_path / "fake.pids").write_text(f"{sleeper.pid}\n")
    env = {"HOME": str(tmp_path), "GRID_STOP_WAIT": "1"}  # seconds it waits for a SIGINT to work
    done = subprocess.run(["bash", str(SCRIPT), "fake"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert sleeper.wait(timeout=5) is not None and not (tmp_path / "fake.pids").exists()
