"""rundir.py: every file the package writes is replaced whole or not at all, a temporary left by a kill is
part of the run, and output is "ours" (replaceable) only when every file and the marker say so."""

from pathlib import Path

import pytest
from helpers import (
    cli_trained_run,
)

from decision_minrnn.rundir import earlier_output


def test_every_file_is_replaced_whole_or_not_at_all(tmp_path):
    """rundir.replaced_atomically, behind every file the package writes outside a checkpoint (final.json,
    config.yaml, scalars.csv, the sweep, the export pair, the report): an error while writing leaves every
    earlier file byte for byte and no temporary; success replaces them all."""
    from decision_minrnn.rundir import replaced_atomically, write_atomic

    a, b = tmp_path / "a.onnx", tmp_path / "a.json"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(OSError):
        with replaced_atomically(a, b) as (tmp_a, tmp_b):
            tmp_a.write_text("new a")
            raise OSError(28, "No space left on device")  # as a full disk would, before the second file
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.onnx"]
    with replaced_atomically(a, b) as (tmp_a, tmp_b):
        tmp_a.write_text("new a")
        tmp_b.write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    write_atomic(b, "newer b")
    assert b.read_text() == "newer b" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.onnx"]


def test_a_temporary_left_by_a_kill_is_part_of_the_run(tmp_path, tiny_minari):
    """A process killed between writing a temporary and renaming it leaves .NAME.tmp-PID in the run: it is
    ours, so --force may still replace the run, and a file of the user's beside it is still refused."""
    from decision_minrnn.rundir import is_run_dir

    _, _, run = cli_trained_run(tmp_path, tiny_minari[0])
    (Path(run) / ".final.json.tmp-4242").write_text("{")
    assert is_run_dir(Path(run))
    (Path(run) / "notes.tmp-1").write_text("mine")
    assert not is_run_dir(Path(run))


def _ours(doc: dict) -> bool:
    return doc.get("written_by") == "us"


EARLIER_OUTPUTS = {  # what lies in the folder -> (which of a.json, b.bin exist, all ours?)
    "nothing": ({}, ([], False)),
    "our marker and its partner": ({"a.json": '{"written_by": "us"}', "b.bin": "x"}, (["a.json", "b.bin"], True)),
    "a marker of the user's": ({"a.json": '{"written_by": "me"}'}, (["a.json"], False)),
    "a marker that is not an object": ({"a.json": '["written_by"]'}, (["a.json"], False)),
    "a marker that is not JSON": ({"a.json": "{written_by"}, (["a.json"], False)),
    "a partner without its marker": ({"b.bin": "x"}, (["b.bin"], False)),
    "our marker, reached by a symlink": ({"a.json": "->", "real.json": '{"written_by": "us"}'}, (["a.json"], False)),
    "our marker, a partner that is a symlink": (
        {"a.json": '{"written_by": "us"}', "b.bin": "->", "real.json": "x"}, (["a.json", "b.bin"], False)),
    "our marker, a partner that is a directory": ({"a.json": '{"written_by": "us"}', "b.bin": "/"},
                                                  (["a.json", "b.bin"], False)),
}  # fmt: skip


@pytest.mark.parametrize("files, expected", EARLIER_OUTPUTS.values(), ids=EARLIER_OUTPUTS.keys())
def test_earlier_output_is_ours_only_when_every_file_is_a_regular_file_and_the_marker_says_so(
    tmp_path, files, expected
):
    for name, text in files.items():
        if text == "->":
            (tmp_path / name).symlink_to(tmp_path / "real.json")
        elif text == "/":
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_text(text)
    present, ours = earlier_output([tmp_path / "a.json", tmp_path / "b.bin"], tmp_path / "a.json", _ours)
    assert ([p.name for p in present], ours) == expected
