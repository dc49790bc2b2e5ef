"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Base class: bad input from the user (path, id, config, checkpoint...)."""


class DataError(UserError):
    """A dataset that cannot be found, read or trusted."""


class ConfigError(UserError):
    """A configuration that is malformed, has unknown keys or values of the wrong type."""


class CheckpointError(UserError):
    """A checkpoint or run directory that is missing, not ours, or does not fit the environment."""


class UsageError(UserError):
    """A command-line option or a Python API argument that is wrong (missing, out of range, or of the wrong kind
    for this run), as opposed to a config file, dataset or checkpoint that is."""


class EnvError(UserError):
    """A Gymnasium environment that cannot be made, or whose spaces do not fit the model's."""


class DivergedError(UserError):
    """Training produced a non-finite loss (or evaluation a non-finite return)."""


class Interrupted(UserError):
    """SIGINT / SIGTERM stopped training after writing a checkpoint; exit_code is 128 + the signal number."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class VideoError(UserError):
    """Recording was asked for but cannot be done here (no encoder, no OpenGL)."""


class MissingExtraError(UserError):
    """An optional dependency that the requested command needs is not installed; the message names the extra."""


def install_hint(extra: str) -> str:
    """How to install an extra: from the checkout, since the package is not published on PyPI yet."""
    return f"pip install -e '.[{extra}]' in your checkout of decision-minrnn (it is not on PyPI yet)"


def guarded(call) -> int:
    """The exit code of call(), with the CLI's contract: a user's error is one line on stderr and exit code 2,
    a signal 128 + its number, never a traceback. `decision-minrnn` and the scripts under scripts/ share it."""
    import sys

    try:
        return int(call() or 0)
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return exc.exit_code
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # read-only or full filesystem, a path under /proc, a file where a directory goes
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or first_line(exc)}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type name when the message is empty), for one-line
    errors and warnings built around a library's multi-line exception; cut to `limit` characters if given."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:limit] if limit else line
