"""Run directories: what counts as one, one process per directory, and a --force that cannot lose files.

* A run directory is one this package wrote: config.yaml and nothing but checkpoints/, metrics.jsonl,
  final.json, the loggers' tb/, scalars.csv, wandb/ and wandb_id, and the lock. `--force` replaces only
  such a directory or an empty one; anything else (a directory with one file of the user's in it) is refused.
* The old run is not deleted when --force starts. Its files are moved aside (into a hidden sibling; the
  directory and its lock stay) and deleted once the new run has written its first checkpoint. If the new
  run fails before that, they are put back.
* The checks are made again once the lock is held, so two processes started together into one new
  directory cannot both write it: the second is refused (in use, or already a run).
* An exclusive lock (fcntl.flock on RUN/.lock, released by the OS when the process dies) keeps a second
  train, resume or force out of a directory in use; the refusal names the holder's pid.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path

from .errors import CheckpointError

LOCK_NAME = ".lock"
RUN_FILES = {
    "config.yaml",
    "checkpoints",
    "metrics.jsonl",
    "final.json",
    "tb",
    "scalars.csv",
    "wandb",
    "wandb_id",
    LOCK_NAME,
}


def is_run_dir(path: Path) -> bool:
    """config.yaml and nothing but what train writes: a directory holding anything else (a user's file, a
    subdirectory of their own) is never deleted by --force."""
    names = {p.name for p in path.iterdir()}
    # {".lock"} alone: a run killed between taking its lock and writing its config.
    return names <= RUN_FILES and ("config.yaml" in names or names == {LOCK_NAME})


def _is_empty_dir(path: Path) -> bool:
    """Empty, or holding only a lock (this process's, once it has taken it)."""
    return path.is_dir() and all(p.name == LOCK_NAME for p in path.iterdir())


def check_run_dir(run_dir: Path, resume: bool, force: bool) -> None:
    """An existing run directory is only touched with --resume (continue) or --force (replace), and --force
    only replaces a directory that this package wrote (or an empty one)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} is a file")
    if not run_dir.exists() or _is_empty_dir(run_dir):
        return
    if resume:
        return
    if not force:
        raise CheckpointError(
            f"run directory {run_dir} already exists; pass --resume to continue it or --force to replace it"
        )
    if not is_run_dir(run_dir):
        raise CheckpointError(
            f"--force refused: {run_dir} is not a decision-minrnn run directory (it holds files "
            f"train does not write, or no config.yaml); nothing was deleted"
        )
    cwd = Path.cwd().resolve()
    if cwd == run_dir.resolve() or run_dir.resolve() in cwd.parents:
        raise CheckpointError(f"--force refused: {run_dir} contains the current directory; nothing was deleted")


class RunDirLock:
    """Exclusive lock on RUN/.lock for as long as a process trains in RUN."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_NAME
        self.file = None

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            self.file = None
            raise CheckpointError(
                f"run directory {self.path.parent} is in use by {holder}; wait for it to finish or stop it first"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()}")
        self.file.flush()
        return self

    def release(self) -> None:
        if self.file is not None:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None


def probe_lock(run_dir: Path) -> None:
    """Refuse at once if another process holds run_dir's lock (without keeping it)."""
    if (run_dir / LOCK_NAME).exists():
        RunDirLock(run_dir).acquire().release()


class ForceReplace:
    """--force: move the old run's files aside now (into a hidden sibling; the locked directory itself stays),
    delete them once the new run has checkpointed, put them back if it fails before that."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.aside: Path | None = None

    def _entries(self, folder: Path):
        return [p for p in folder.iterdir() if p.name != LOCK_NAME]

    def begin(self) -> None:
        if self.run_dir.is_dir() and self._entries(self.run_dir):
            self.aside = self.run_dir.with_name(f".{self.run_dir.name}.replaced-{os.getpid()}-{int(time.time())}")
            self.aside.mkdir()
            for entry in self._entries(self.run_dir):
                os.replace(entry, self.aside / entry.name)

    def commit(self) -> None:
        """The new run has started for real: the old one can go."""
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def rollback(self) -> None:
        """The new run failed before its first checkpoint: put the old one back."""
        if self.aside is not None:
            for entry in self._entries(self.run_dir):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            for entry in self._entries(self.aside):
                os.replace(entry, self.run_dir / entry.name)
            self.aside.rmdir()
            self.aside = None
