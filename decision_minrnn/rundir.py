"""Run directories: what counts as one, one process per directory, and a --force that cannot lose files.

* A run directory is one this package wrote: config.yaml and nothing but what train writes, checked at every
  level by name and kind (RUN_TREE: checkpoints/step-*/ with their three files, tb/events.out.tfevents.*,
  metrics.jsonl, final.json, scalars.csv, wandb/ and wandb_id, the lock). `--force` replaces only such a
  directory or an empty one; anything else (one file of the user's anywhere in it) is refused.
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
import fnmatch
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError

LOCK_NAME = ".lock"
CONFIG, METRICS, FINAL, SCALARS, TENSORBOARD = "config.yaml", "metrics.jsonl", "final.json", "scalars.csv", "tb"
CHECKPOINTS, BEST = "checkpoints", "best"
STEP_DIR = re.compile(r"^step-(\d{8})$")
SEED_DIR = re.compile(r"^seed(\d+)$")
# What train writes, at every level: name pattern -> "file", "link" (a symlink or a file), OTHERS (a directory
# whose contents another library owns: wandb's run folders), or the mapping of what that directory may hold.
OTHERS = "others"
_CHECKPOINT = {"model.safetensors": "file", "train.safetensors": "file", "state.json": "file"}
# evaluate --target-sweep's results, beside final.json (the best checkpoint's in the second).
SWEEP_FILE, BEST_SWEEP_FILE = "target_sweep.json", "target_sweep-best.json"
RUN_TREE = {
    CONFIG: "file",
    METRICS: "file",
    SCALARS: "file",
    "wandb_id": "file",
    # final.json, evaluate --target-sweep's files, and what a script measures from the run's checkpoints and
    # writes beside them (scripts/: the names are theirs): results derived from the run, replaced with it
    "*.json": "file",
    LOCK_NAME: "file",
    ".*.lock": "file",  # output_lock's, beside a file that a command other than train writes (the sweep)
    # replaced_atomically's temporaries, left only by a process killed between writing and renaming one
    ".*.tmp-[0-9]*": "file",
    # checkpoint.save_checkpoint: step-XXXXXXXX and best, each written into a .tmp-* directory first
    CHECKPOINTS: {"step-[0-9]*": _CHECKPOINT, BEST: _CHECKPOINT, ".tmp-*": _CHECKPOINT},
    TENSORBOARD: {"events.out.tfevents.*": "file"},  # SummaryWriter, hparams included (run_name=".")
    "wandb": {
        "run-*": OTHERS,
        "offline-run-*": OTHERS,
        "latest-run": "link",
        "debug.log": "link",
        "debug-internal.log": "link",
    },
}


@dataclass(frozen=True)
class RunDir:
    """The layout of a run directory, the one place that spells it: every module that reads or writes a run
    asks this object for a path, a checkpoint or the run's state instead of joining names itself.

        RUN/config.yaml  metrics.jsonl  scalars.csv  final.json  tb/  target_sweep.json  .lock
        RUN/checkpoints/step-XXXXXXXX/  (the newest train.keep_checkpoints)   RUN/checkpoints/best/
        GROUP/seed<N>/   (a seed group: each member a complete run directory of its own)"""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # ----- files
    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def final(self) -> Path:
        return self.root / FINAL

    @property
    def scalars(self) -> Path:
        return self.root / SCALARS

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD

    def sweep(self, best: bool = False) -> Path:
        """evaluate --target-sweep's result for the last (or the best) checkpoint."""
        return self.root / (BEST_SWEEP_FILE if best else SWEEP_FILE)

    # ----- checkpoints
    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    def step_dir(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}"

    @property
    def best_dir(self) -> Path:
        return self.checkpoints / BEST

    @staticmethod
    def step_of(checkpoint: Path) -> int | None:
        """The step of a step-XXXXXXXX directory; None for another name (best, a temporary)."""
        match = STEP_DIR.match(Path(checkpoint).name)
        return int(match.group(1)) if match else None

    def step_dirs(self) -> list[Path]:
        """The step checkpoints, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.iterdir() if p.is_dir() and STEP_DIR.match(p.name))

    @property
    def newest_step(self) -> int:
        """The newest step checkpoint's step; 0 without one."""
        dirs = self.step_dirs()
        return self.step_of(dirs[-1]) if dirs else 0

    @property
    def has_checkpoint(self) -> bool:
        return bool(self.step_dirs())

    # ----- state
    def summary(self) -> dict | None:
        """final.json as written, or None where it is missing or unreadable."""
        try:
            summary = json.loads(self.final.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        return summary if isinstance(summary, dict) else None

    @property
    def finished(self) -> bool:
        """final.json says the run finished."""
        return bool((self.summary() or {}).get("finished"))

    # ----- seed groups
    def member(self, seed: int) -> RunDir:
        return RunDir(self.root / f"seed{seed}")

    @staticmethod
    def seed_of(path: Path) -> int | None:
        match = SEED_DIR.match(Path(path).name)
        return int(match.group(1)) if match else None

    def member_seeds(self) -> list[int]:
        """A seed group's directory: the seeds of its members (seed<N>/config.yaml, and no config.yaml of its
        own); [] for anything else."""
        if not self.root.is_dir() or self.config.exists():
            return []
        return sorted(
            seed for p in self.root.iterdir() if (seed := self.seed_of(p)) is not None and (p / CONFIG).is_file()
        )

    @property
    def resumable(self) -> bool:
        """What `train --resume` can continue: a run with a checkpoint, or a seed group's directory."""
        return self.checkpoints.is_dir() or bool(self.member_seeds())


@contextmanager
def replaced_atomically(*paths: Path) -> Iterator[list[Path]]:
    """Write files so that no reader ever sees half of one and a failure loses nothing: yields a hidden
    temporary beside each path (.NAME.tmp-PID) to write; when the block ends without an error each is renamed
    onto its path, in order (os.replace: atomic on one filesystem), and on an error none is, so the files
    before stay as they were. The temporaries are removed either way.

    Every file this package writes outside a checkpoint goes through here (checkpoints are whole directories,
    renamed the same way by checkpoint.save_checkpoint)."""
    tmps = [p.with_name(f".{p.name}.tmp-{os.getpid()}") for p in paths]
    try:
        yield tmps
        for tmp, path in zip(tmps, paths):
            os.replace(tmp, path)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


def write_atomic(path: Path, text: str) -> None:
    """path.write_text(text), through replaced_atomically."""
    with replaced_atomically(Path(path)) as (tmp,):
        tmp.write_text(text)


def earlier_output(files: Sequence[Path], marker: Path, is_ours: Callable[[dict], bool]) -> tuple[list[Path], bool]:
    """The files of one command's output that exist, and whether an earlier run of that command wrote them all.

    Every "replace only what we wrote" check decides with this (evaluate --sweep-out, export --out, report and
    compare --out); each caller says in its own words what it refuses. Ours means: every existing file is a
    regular file (a symlink would write through to a file of the user's), and `marker`, that output's JSON, is
    a regular file holding an object that `is_ours` accepts. Nothing existing gives ([], False).
    """
    present = [p for p in files if p.exists() or p.is_symlink()]
    if not present:
        return [], False
    if any(p.is_symlink() or not p.is_file() for p in present) or marker.is_symlink() or not marker.is_file():
        return present, False
    try:
        doc = json.loads(marker.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return present, False
    return present, isinstance(doc, dict) and bool(is_ours(doc))


def foreign_entry(path: Path, tree: dict = RUN_TREE) -> Path | None:
    """The first entry under `path` that train does not write, by name or by kind (a file where train writes
    a directory, a symlink where it writes neither), looked for at every level; None if there is none."""
    for entry in sorted(path.iterdir()):
        kind = next((k for pattern, k in tree.items() if fnmatch.fnmatchcase(entry.name, pattern)), None)
        if kind == "link" and (entry.is_symlink() or entry.is_file()):
            continue
        if kind is None or kind == "link" or entry.is_symlink():
            return entry
        if kind == "file":
            if not entry.is_file():
                return entry
        elif not entry.is_dir():
            return entry
        elif kind != OTHERS:
            inner = foreign_entry(entry, kind)
            if inner is not None:
                return inner
    return None


def is_run_dir(path: Path) -> bool:
    """config.yaml and nothing but what train writes, at every level: a directory holding anything else (a
    user's file, in the run or inside its checkpoints/, tb/ or wandb/) is never deleted by --force."""
    names = {p.name for p in path.iterdir()}
    # {".lock"} alone: a run killed between taking its lock and writing its config.
    return (CONFIG in names or names == {LOCK_NAME}) and foreign_entry(path) is None


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
            f"run directory {run_dir} already exists; train into a new one (--run-dir NEW), continue it "
            "(--resume), or replace it and lose it (--force)"
        )
    if not is_run_dir(run_dir):
        foreign = foreign_entry(run_dir)
        why = f"it holds {foreign.relative_to(run_dir)}, which train does not write" if foreign else "no config.yaml"
        raise CheckpointError(
            f"--force refused: {run_dir} is not a decision-minrnn run directory ({why}); nothing was deleted"
        )
    cwd = Path.cwd().resolve()
    if cwd == run_dir.resolve() or run_dir.resolve() in cwd.parents:
        raise CheckpointError(f"--force refused: {run_dir} contains the current directory; nothing was deleted")


@contextmanager
def output_lock(path: Path) -> Iterator[None]:
    """Hold .NAME.lock beside `path` while a command computes and writes it: a second process writing the same
    file at once is refused in one line (both would print "wrote" and one result would be lost)."""
    lock = Path(path).with_name(f".{Path(path).name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise CheckpointError(f"{path} is being written by {holder}; wait for it to finish") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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


def _is_fresh(run_dir: Path) -> bool:
    """Holds nothing but what this attempt wrote before training started (lock, config, an empty tb/)."""
    if not run_dir.is_dir() or run_dir.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        return False
    return {p.name for p in run_dir.iterdir()} <= {LOCK_NAME, CONFIG}


class RunDirTransaction:
    """A training process's hold on its run directories, as one `with` block:

    - entering takes each directory's lock (creating it), checks it again under the lock (another process
      may have written a run there since the first check) and, for --force, moves the old run aside;
    - `started()`, once the new runs have checkpointed, deletes the replaced ones for good;
    - leaving on an exception puts every replaced run back and removes a new directory that holds nothing
      but what this attempt wrote; leaving either way releases the locks."""

    def __init__(self, roots: list[Path], resume: bool, force: bool):
        self.roots, self.resume, self.force = list(roots), resume, force
        self.locks: list[RunDirLock] = []
        self.replaced: list[ForceReplace] = []

    def __enter__(self) -> RunDirTransaction:
        try:
            for root in self.roots:
                replace = ForceReplace(root) if self.force and not self.resume else None
                self.locks.append(RunDirLock(root))
                self.locks[-1].acquire()  # refused if another process holds it
                check_run_dir(root, self.resume, self.force)
                if replace is not None:
                    self.replaced.append(replace)
                    replace.begin()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def started(self) -> None:
        """The new runs have started for real (their first checkpoint is written): the replaced ones can go."""
        for replace in self.replaced:
            replace.commit()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:
                for replace in self.replaced:
                    replace.rollback()  # the new run never checkpointed: the old one comes back
                for lock in self.locks:
                    root = lock.path.parent
                    if lock.file is not None and not self.resume and _is_fresh(root):
                        shutil.rmtree(root, ignore_errors=True)  # a new run that failed before writing anything
        finally:
            for lock in self.locks:
                lock.release()
