"""`decision-minrnn bench` on a device that is not there: one line."""

import pytest
from helpers import (
    one_line_error,
)

from decision_minrnn.cli import main


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message when CUDA is missing")
def test_bench_on_a_missing_device_is_one_line(capsys):
    assert main(["bench", "--quick", "--device", "cuda"]) == 2
    one_line_error(capsys, "--device=cuda but no CUDA device is available")
    assert main(["bench", "--quick", "--device", "foo"]) == 2
    one_line_error(capsys, "is not a device")
