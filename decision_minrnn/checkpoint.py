"""Checkpoints: safetensors for tensors plus JSON for everything else; never unpickled on load.

A checkpoint is a directory  RUN/checkpoints/step-00001000/  holding
    model.safetensors   model weights
    train.safetensors   optimizer moments and RNG states (needed to resume bit-for-bit)
    state.json          format tag, step, config, data-derived values (dims, normalization, env id, reference
                        scores), the optimizer's hyper-parameters and the SHA-256 of the two tensor files
It is written into a hidden temp directory and renamed into place: a crash never leaves a half-written
checkpoint where the loader looks. Loading checks the digests, so flipped bytes in a tensor file (which
safetensors reads without complaint when the header survives) are refused in one line, naming the file and
the newest earlier checkpoint that is intact. Where checkpoints live in a run is rundir.RunDir's.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError
from .rundir import RunDir

FORMAT = "decision-minrnn-checkpoint"
VERSION = 1
TENSOR_FILES = ("model.safetensors", "train.safetensors")


@dataclass
class Checkpoint:
    path: Path
    state: dict  # the JSON
    model: dict[str, torch.Tensor]
    train: dict[str, torch.Tensor]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, param_state in sd["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, ckpt: Checkpoint) -> None:
    meta = ckpt.state["optimizer"]
    state: dict = {}
    for name, value in ckpt.train.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def damaged_file(ckpt_dir: Path, state: dict) -> str | None:
    """The first tensor file whose SHA-256 differs from the one state.json recorded (None: all match, or a
    checkpoint written before digests were kept)."""
    for name, expected in (state.get("digests") or {}).items():
        path = ckpt_dir / name
        if name in TENSOR_FILES and path.is_file() and file_digest(path) != expected:  # absent: the loader says
            return name
    return None


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: dict,
    rng: dict[str, torch.Tensor],
    keep: int = 2,
    name: str | None = None,
) -> Path:
    """Write RUN/checkpoints/step-XXXXXXXX (or RUN/checkpoints/NAME, e.g. `best`) atomically; keep the newest
    `keep` step checkpoints. A named checkpoint is never pruned and never taken as the newest."""
    run = RunDir(run_dir)
    root = run.checkpoints
    root.mkdir(parents=True, exist_ok=True)
    final = root / name if name else run.step_dir(step)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        train_tensors, optim_meta = _optimizer_tensors(optimizer) if optimizer is not None else ({}, None)
        train_tensors.update({f"rng.{k}": v.cpu().contiguous() for k, v in rng.items()})
        save_file(train_tensors, str(tmp / "train.safetensors"))
        digests = {f: file_digest(tmp / f) for f in TENSOR_FILES}
        full_state = {"format": FORMAT, "version": VERSION, "step": step, "optimizer": optim_meta, **state}
        full_state["digests"] = digests
        (tmp / "state.json").write_text(json.dumps(full_state, indent=1))
        if final.exists():  # same step written again (e.g. final save after a periodic one)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except (OSError, SafetensorError) as exc:  # a full disk, a read-only or vanished directory
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"cannot write checkpoint {final} ({reason}); the checkpoints before it are intact"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in run.step_dirs()[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):  # left by a process killed while writing; never a loadable checkpoint
        shutil.rmtree(stale, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The step checkpoints of a run directory, oldest first (RunDir.step_dirs)."""
    return RunDir(run_dir).step_dirs()


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (its newest checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / "state.json").is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise CheckpointError(f"{path} is neither a decision-minrnn checkpoint nor a run directory with checkpoints")
    return found[-1]


def _check_state(ckpt_dir: Path, state: dict) -> None:
    """The fields every reader relies on, with their types: a hand-edited or truncated state.json is one
    line here instead of a KeyError or TypeError later."""
    problem = None
    data = state.get("data")
    if not isinstance(state.get("step"), int) or isinstance(state.get("step"), bool) or state["step"] < 0:
        problem = f"step is {state.get('step')!r}, not a non-negative integer"
    elif not isinstance(state.get("config"), dict):
        problem = "config is missing or not a mapping"
    elif not isinstance(data, dict) or not all(isinstance(data.get(k), int) for k in ("obs_dim", "act_dim")):
        problem = "data.obs_dim / data.act_dim are missing or not integers"
    else:
        norm = data.get("obs_norm")
        if not isinstance(norm, dict) or any(
            not isinstance(norm.get(k), list) or len(norm[k]) != data["obs_dim"] for k in ("mean", "std")
        ):
            problem = f"data.obs_norm must hold mean and std of length obs_dim={data['obs_dim']}"
        elif not all(isinstance(v, (int, float)) and math.isfinite(v) for k in ("mean", "std") for v in norm[k]):
            problem = "data.obs_norm holds a value that is not a finite number"
        elif min(norm["std"]) <= 0:  # a negative std flips that observation's sign: other returns, silently
            problem = f"data.obs_norm.std holds {min(norm['std'])}; every std must be > 0"
    if problem:
        raise CheckpointError(f"{ckpt_dir}/state.json is damaged: {problem}")


def _intact_before(ckpt_dir: Path) -> str:
    """Where a damaged checkpoint's run can go on from: the newest earlier step checkpoint whose files match."""
    run = RunDir(ckpt_dir.parent.parent)
    for earlier in reversed(run.step_dirs()):
        if earlier == ckpt_dir:
            continue
        try:
            state = json.loads((earlier / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and damaged_file(earlier, state) is None:
            return f"the newest intact checkpoint is {earlier} (move the damaged one aside to resume from it)"
    return "no other checkpoint of this run is intact"


def load_checkpoint(path: str | Path) -> Checkpoint:
    ckpt_dir = resolve_checkpoint(path)
    try:
        state = json.loads((ckpt_dir / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{ckpt_dir}/state.json is unreadable ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{ckpt_dir} is not a decision-minrnn checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{ckpt_dir} has checkpoint version {state.get('version')}, this code reads {VERSION}")
    _check_state(ckpt_dir, state)
    damaged = damaged_file(ckpt_dir, state)
    if damaged is not None:
        raise CheckpointError(
            f"{ckpt_dir / damaged} is damaged (its SHA-256 is not the one state.json recorded); "
            + _intact_before(ckpt_dir)
        )
    try:
        model = load_file(str(ckpt_dir / "model.safetensors"))
        train = load_file(str(ckpt_dir / "train.safetensors")) if (ckpt_dir / "train.safetensors").exists() else {}
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{ckpt_dir} has unreadable tensors ({exc})") from None
    bad = next((name for name, t in model.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if bad is not None:  # resuming them would blame the learning rate; evaluating them, the environment
        raise CheckpointError(
            f"{ckpt_dir} holds non-finite weights ({bad} has NaN or inf); it can neither be evaluated nor resumed"
        )
    return Checkpoint(ckpt_dir, state, model, train)
