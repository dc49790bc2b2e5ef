"""Storage that outlives a worker node: where a cluster sweep keeps each run's checkpoints and files.

`sweep --storage PATH_OR_URI` makes every run train in a scratch directory on its worker node and copy its
run directory (the newest checkpoint, config, metrics, scalars, TensorBoard events) to STORAGE/<run id>
after every checkpoint. A run restarted on another node (Ray retries a task whose worker died) first copies
it back and resumes from that checkpoint. The storage is a local or shared path, or any URI fsspec opens
(s3://, gs://, ... with the matching fsspec package installed), as Ray's own storage does through fsspec.

Consistency without atomic renames (object stores have none): a checkpoint's files are written first, then
STORAGE/<run id>/latest.json, which names it. A reader trusts latest.json only, so a copy cut off half way
is never resumed from.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

from ..errors import ConfigError, MissingExtraError, install_hint
from ..rundir import CHECKPOINTS, CONFIG, FINAL, METRICS, SCALARS, TENSORBOARD, RunDir

LATEST = "latest.json"
# What a run directory holds besides checkpoints; copied with every checkpoint and brought home at the end.
RUN_FILES = (CONFIG, METRICS, SCALARS, FINAL)
RUN_DIRS = (TENSORBOARD,)


def run_files(run_dir: Path) -> dict[str, bytes]:
    """A run directory's small files (not its checkpoints), by path relative to it."""
    files = {name: (run_dir / name).read_bytes() for name in RUN_FILES if (run_dir / name).is_file()}
    for folder in RUN_DIRS:
        for path in sorted((run_dir / folder).rglob("*")) if (run_dir / folder).is_dir() else []:
            if path.is_file():
                files[path.relative_to(run_dir).as_posix()] = path.read_bytes()
    return files


def write_run_files(run_dir: Path, files: dict[str, bytes]) -> None:
    """The inverse of run_files, for the driver: only the names run_files produces, never outside run_dir."""
    root = run_dir.resolve()
    for name, data in files.items():
        target = (root / name).resolve()
        top = Path(name).parts[0] if Path(name).parts else ""
        if root not in target.parents or (name not in RUN_FILES and top not in RUN_DIRS):
            raise ValueError(f"refusing to write {name!r} outside the run's own files")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)


class RunStorage:
    def __init__(self, uri: str):
        try:
            import fsspec
        except ImportError:
            raise MissingExtraError(f"--storage needs fsspec: {install_hint('ray')}") from None
        try:
            self.fs, self.root = fsspec.core.url_to_fs(uri)
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"--storage {uri}: {exc}") from None
        self.uri = uri

    def _path(self, run_id: str, *parts: str) -> str:
        return posixpath.join(self.root, run_id, *parts)

    def latest_step(self, run_id: str) -> int:
        """The step of the newest complete checkpoint stored for run_id; 0 if none."""
        try:
            with self.fs.open(self._path(run_id, LATEST), "r") as f:
                return int(json.load(f)["step"])
        except FileNotFoundError:
            return 0

    def upload(self, run_id: str, run_dir: Path, step: int) -> None:
        """Copy the run's files and its checkpoint of `step`, then point latest.json at it; drop older ones."""
        checkpoint = RunDir(run_dir).step_dir(step)
        name = checkpoint.name
        for path in sorted(checkpoint.iterdir()):
            self._put(path.read_bytes(), self._path(run_id, CHECKPOINTS, name, path.name))
        self.upload_files(run_id, run_dir)
        self._put(json.dumps({"step": step, "checkpoint": name}).encode(), self._path(run_id, LATEST))
        for old in self.fs.ls(self._path(run_id, CHECKPOINTS), detail=False):
            if posixpath.basename(old.rstrip("/")) != name:
                self.fs.rm(old, recursive=True)

    def upload_files(self, run_id: str, run_dir: Path) -> None:
        """The run's small files (run_files), e.g. final.json once it exists."""
        for rel, data in run_files(run_dir).items():
            self._put(data, self._path(run_id, "files", rel))

    def download(self, run_id: str, run_dir: Path) -> int:
        """Restore the newest stored checkpoint and the run's files into run_dir; returns its step (0: none)."""
        step = self.latest_step(run_id)
        if step == 0:
            return 0
        target = RunDir(run_dir).step_dir(step)
        target.mkdir(parents=True, exist_ok=True)
        for remote in self.fs.ls(self._path(run_id, CHECKPOINTS, target.name), detail=False):
            (target / posixpath.basename(remote)).write_bytes(self.fs.cat_file(remote))
        files_root = self._path(run_id, "files")
        for remote in self.fs.find(files_root):
            rel = posixpath.relpath(remote, files_root.rstrip("/"))
            local = run_dir / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(self.fs.cat_file(remote))
        return step

    def _put(self, data: bytes, path: str) -> None:
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with self.fs.open(path, "wb") as f:
            f.write(data)
