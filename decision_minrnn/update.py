"""The training update: DT's masked MSE and optimizer step, for one model or for a group of seeds' models
trained in one process with one vmapped forward and backward per step (train.seeds).

Each seed keeps its own DecisionModel (its own initialisation), its own sampler stream and its own AdamW;
only the forward and backward are shared. Every step stacks the seeds' parameters (torch.stack is
differentiable, so each model's .grad receives exactly its own seed's gradient), runs
torch.func.functional_call under vmap over the stacked parameters and the stacked batches, and sums the
per-seed losses: the sum's gradient with respect to one seed's parameters is that seed's own loss gradient.
Clipping and the optimizer step then run per seed with the same calls as a single-seed run
(optimizer_step below), so the update is the single-seed update.

What is and is not equal to training each seed alone:
* without dropout, the weights agree to float rounding (1e-10 in float64: tests/test_seed_group.py);
* with dropout, vmap draws every seed's masks from the one global generator (randomness="different"), so
  a seed trained in a group follows another, equally random, dropout stream than it would alone.
The scans fold the vmapped dim into their batch dim (nn/scan.py's vmap rules), which is exact.
Speed: docs/speed.md section 10 (scripts/bench_seed_group.py) has the ratio against sequential runs.
"""

from __future__ import annotations

import math

import torch
from torch.func import functional_call, vmap

from .config import Config


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real positions: sum over mask / (number of real positions * act_dim)
    (kzl/decision-transformer gym/decision_transformer/training/seq_trainer.py)."""
    m = mask.unsqueeze(-1).to(pred.dtype)
    return ((pred.float() - target.float()) ** 2 * m).sum() / (m.sum() * pred.shape[-1]).clamp(min=1.0)


# torch fuses AdamW on CPU from 2.4 on (and on CUDA before that); older versions keep the per-tensor loop.
FUSED_ADAMW = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 4) or None


def adamw(model: torch.nn.Module, cfg: Config) -> torch.optim.AdamW:
    """DT's AdamW (kzl/decision-transformer gym/experiment.py: lr, weight decay) at step 0's learning rate.
    fused=True: one kernel over all parameters instead of a dozen ops per parameter tensor, the same update to
    float rounding and a third of the optimizer's time on CPU (docs/speed.md section 3b). A checkpoint keeps
    the flag with its param_groups, so a run resumes with the optimizer it started with."""
    return torch.optim.AdamW(
        model.parameters(), lr=lr_at(0, cfg), weight_decay=cfg.train.weight_decay, fused=FUSED_ADAMW
    )


def optimizer_step(
    loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float
) -> torch.Tensor:
    """DT's update (kzl/decision-transformer training/trainer.py): backward, clip the gradient norm, step.
    Returns the gradient norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return grad_norm


def lr_at(step: int, cfg: Config) -> float:
    """The learning rate of optimizer step `step` (0-based), a pure function of the step so that a resumed
    run needs no scheduler state.

    Warmup is DT's: linear from lr/warmup to lr over warmup_steps (kzl/decision-transformer
    gym/experiment.py, `LambdaLR(lambda steps: min((steps+1)/warmup_steps, 1))`). After it:
    * constant: lr (DT's schedule, what configs/d4rl/ use);
    * cosine: lr -> min_lr along half a cosine (the closed form of torch.optim.lr_scheduler.CosineAnnealingLR
      with T_max = steps - warmup_steps, eta_min = min_lr);
    * linear: lr -> min_lr in a straight line.
    Both reach min_lr at step train.steps, one past the last step taken. Resuming with a larger train.steps
    stretches the rest of the decay.
    """
    t = cfg.train
    if t.warmup_steps > 0 and step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    if t.lr_schedule == "constant":
        return t.lr
    decay_steps = t.steps - t.warmup_steps
    progress = min((step - t.warmup_steps) / decay_steps, 1.0) if decay_steps > 0 else 1.0
    if t.lr_schedule == "cosine":
        return t.min_lr + (t.lr - t.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return t.lr + (t.min_lr - t.lr) * progress


class SeedGroup:
    """N models of one architecture, trained together: losses(batches) then step(losses)."""

    def __init__(
        self,
        models: list[torch.nn.Module],
        optimizers: list[torch.optim.Optimizer],
        grad_clip: float,
        forward=None,
    ):
        """forward: what computes the single model's predictions (e.g. torch.compile(model)); default the model."""
        if len(models) != len(optimizers) or not models:
            raise ValueError("a seed group needs one optimizer per model, and at least one model")
        if forward is not None and len(models) > 1:
            raise ValueError("a custom forward applies to a single model only")
        self.models, self.optimizers, self.grad_clip = models, optimizers, grad_clip
        self.forward = forward if forward is not None else models[0]
        self.names = [name for name, _ in models[0].named_parameters()]
        base = models[0]  # functional_call swaps the stacked parameters in; its own are never read

        def loss_of_one(params, batch):
            pred = functional_call(base, params, (batch,))
            return masked_mse(pred, batch["act"], batch["mask"])

        self._losses = vmap(loss_of_one, randomness="different")

    def losses(self, batches: list[dict]) -> torch.Tensor:
        """One batch per model (dicts of tensors of equal shapes) -> the N losses, shape (N,)."""
        if len(self.models) == 1:  # the single-seed graph, op for op
            return masked_mse(self.forward(batches[0]), batches[0]["act"], batches[0]["mask"]).unsqueeze(0)
        per_model = [dict(m.named_parameters()) for m in self.models]
        params = {name: torch.stack([p[name] for p in per_model]) for name in self.names}
        stacked = {key: torch.stack([b[key] for b in batches]) for key in batches[0]}
        return self._losses(params, stacked)

    def step(self, losses: torch.Tensor) -> list[torch.Tensor]:
        """Backward through all seeds at once, then each seed's clip and AdamW step. Returns the N gradient
        norms before clipping."""
        if len(self.models) == 1:
            return [optimizer_step(losses[0], self.models[0], self.optimizers[0], self.grad_clip)]
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        norms = []
        for model, optimizer in zip(self.models, self.optimizers):
            norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip))
            optimizer.step()
        return norms
