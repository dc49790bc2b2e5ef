"""One seed's training state, with its own save and load: the model, its AdamW, its batch stream (whose generator
fixes every batch), and what its checkpoints carry besides (config, data block, best, last loss, and the
timesteps and seconds summed over resumes). train.py steps a list of them in lockstep (update.SeedGroup), and a
Clock adds up their seconds."""

from __future__ import annotations

import time

import torch

from .checkpoint import Checkpoint, restore_optimizer, save_checkpoint
from .config import config_to_dict
from .data.info import DataInfo
from .data.sampler import training_sampler
from .errors import CheckpointError, first_line
from .loggers import RunLoggers
from .models import build_model
from .resume import OpenRun
from .update import adamw


class Learner:
    """Built from its seed (torch.manual_seed(train.seed) before the model's init) or from its checkpoint."""

    def __init__(self, run: OpenRun, dataset, info: DataInfo, device: torch.device):
        cfg, ckpt = run.cfg, run.ckpt
        self.cfg, self.paths, self.index = cfg, run.paths, run.index
        torch.manual_seed(cfg.train.seed)
        self.model = build_model(cfg, dataset.obs_dim, dataset.act_dim).to(device)
        self.sampler = training_sampler(cfg, dataset, info.obs_norm)
        self.optimizer = adamw(self.model, cfg)
        self.device = device
        saved = ckpt.state if ckpt is not None else {}
        if ckpt is not None:
            self._load(ckpt)
        self.loss = float(saved.get("loss", "nan"))
        # Summed over resumes (kept in every checkpoint): the real (unpadded) timesteps trained on, the seconds
        # spent in updates, and the loop's wall seconds with its evaluations and checkpoints.
        self.timesteps = int(saved.get("timesteps", 0))
        self.train_seconds = float(saved.get("train_seconds", 0.0))
        self.wall_seconds = float(saved.get("wall_seconds", 0.0))
        self.state = {"config": config_to_dict(cfg), "data": info.to_dict(), "best": saved.get("best")}
        self.loggers: RunLoggers | None = None

    def _load(self, ckpt: Checkpoint) -> None:
        try:
            self.model.load_state_dict(ckpt.model)
            restore_optimizer(self.optimizer, ckpt)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"the overrides do not fit the checkpoint in {self.paths.root} "
                f"({first_line(exc, 160)}); resume with the run's own model settings"
            ) from None
        self.sampler.set_state(ckpt.train["rng.sampler"])

    def next_batch(self, lr: float) -> dict:
        """This step's learning rate set, the next batch drawn (and moved to the device)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.sampler.sample()
        if self.device.type == "cuda":  # pinned host memory lets the copy overlap the previous step's kernels
            batch = {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}
        return batch

    def open_loggers(self, start_step: int) -> None:
        """TensorBoard / CSV / W&B for this run (they write into its directory: inside the run's transaction)."""
        cfg = self.cfg
        self.loggers = RunLoggers(
            cfg.train.loggers, self.paths.root, config_to_dict(cfg), cfg.name, start_step, cfg.train.wandb_project
        )

    def save(self, step: int, name: str | None = None) -> None:
        """A checkpoint at `step` (checkpoints/step-N, or `name`, e.g. best): weights, optimizer, RNG states and
        what the run has counted so far."""
        self.state.update(
            loss=self.loss, timesteps=self.timesteps, train_seconds=self.train_seconds, wall_seconds=self.wall_seconds
        )
        rng = {"torch": torch.get_rng_state(), "sampler": self.sampler.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        # train.keep_checkpoints applies to every save: a best save with save_checkpoint's default kept 2
        keep = self.cfg.train.keep_checkpoints
        save_checkpoint(self.paths.root, step, self.model, self.optimizer, self.state, rng, keep=keep, name=name)


def restore_shared_rng(ckpt: Checkpoint | None, device: torch.device) -> int:
    """The dropout generator a group shares (every member's checkpoint holds it), after every member is built;
    returns the step to start from (0 for new runs)."""
    if ckpt is None:
        return 0
    torch.set_rng_state(ckpt.train["rng.torch"])
    if device.type == "cuda" and "rng.cuda" in ckpt.train:
        torch.cuda.set_rng_state(ckpt.train["rng.cuda"], device)
    return ckpt.step


class Clock:
    """The learners' seconds (in updates; wall, with evaluations and checkpoints: a seed group's members share
    each second), the samples per second between log lines, and the ETA."""

    def __init__(self, learners: list[Learner]):
        self.learners = learners
        self.window_start, self.window_samples = time.perf_counter(), 0
        self.wall_mark = time.perf_counter()  # wall_seconds: counted up to each checkpoint and to final.json
        self.seconds_before = learners[0].train_seconds  # a resumed run's earlier sittings: not in its ETA

    def add(self, seconds: float, which: str) -> None:
        for m in self.learners:
            setattr(m, which, getattr(m, which) + seconds / len(self.learners))

    def add_wall(self) -> None:
        now = time.perf_counter()
        self.add(now - self.wall_mark, "wall_seconds")
        self.wall_mark = now

    def stepped(self, seconds: float, samples: int) -> None:
        """One update took `seconds` and trained on `samples` windows per learner."""
        self.add(seconds, "train_seconds")
        self.window_samples += samples

    def log(self, step: int, grad_norms, lr: float) -> None:
        elapsed = time.perf_counter() - self.window_start
        for m, grad_norm in zip(self.learners, grad_norms):
            scalars = {
                "train/loss": m.loss,
                "train/lr": lr,
                "train/grad_norm": float(grad_norm),
                "train/samples_per_s": self.window_samples / max(elapsed, 1e-9),
            }
            m.loggers.scalars(scalars, step)
        self.window_start, self.window_samples = time.perf_counter(), 0

    def eta_line(self, start: int, done: int, end: int) -> str:
        """The first estimate of the training time left, once ETA_AFTER steps are timed (the start line says
        what the run is; this, how long its updates will take; evaluations come on top)."""
        timed = (self.learners[0].train_seconds - self.seconds_before) * len(self.learners)
        per_step = timed / max(1, done - start)
        left = per_step * (end - done)
        return f"ETA: about {left / 60:.1f} min of training left ({1e3 * per_step:.0f} ms a step), evaluations extra"
