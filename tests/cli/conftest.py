"""Fixtures the command tests share."""

import pytest
from helpers import tiny_train_argv

from decision_minrnn.cli import main


@pytest.fixture
def trained_run(tmp_path, tiny_minari):
    """(a tiny run trained by the CLI in tmp_path/run, an empty tmp_path/out) for the export and policy cases."""
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    assert main(tiny_train_argv(tmp_path, tiny_minari[0])) == 0
    out = tmp_path / "out"
    out.mkdir()
    return tmp_path / "run", out
