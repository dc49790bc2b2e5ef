"""ONNX export of the O(1) recurrent step, for deployment without torch.

`decision-minrnn export --checkpoint RUN --out policy.onnx` writes:

* policy.onnx: one environment step. Inputs: `obs` (N, obs_dim) normalized, `rtg` (N, 1) return-to-go
  already divided by rtg_scale, `timestep` (N,) int64, `prev_action` (N, act_dim), `first` (N, 1) float
  (1 at an episode's first step), and the recurrent state as explicit tensors `state_in_<i>`. Outputs:
  `action` (N, act_dim) and `state_out_<i>`, to feed back as `state_in_<i>` at the next step.
* policy.json beside it: what the step needs around it (normalizer, rtg_scale, target returns, dims, env id,
  action bounds, the observation view, state names and shapes). `decision_minrnn.onnx_runner` drives the
  pair with numpy and onnxruntime only.

The graph is `DecisionModel.step` traced, the function every torch acting path calls. With interleaved tokens
an env step feeds three tokens (a_{t-1}, R_t, s_t); at an episode's first step there is no a_{t-1}, so the
graph computes that token's step and keeps the incoming state where `first` is 1. Transformer runs have no
O(1) step and are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import warnings
from pathlib import Path

import torch

from .envs.make import action_bounds
from .errors import CheckpointError, MissingExtraError, UsageError, install_hint
from .models.step import RecurrentStep, flatten_state
from .rundir import earlier_output, replaced_atomically
from .runs import env_of, eval_targets, model_from_checkpoint

EXPORT_FORMAT = "decision-minrnn-onnx-step"
EXPORT_VERSION = 1


def _require_onnx():
    try:
        import onnx  # noqa: F401  (torch's exporter needs both; checked here for a clear message)
        import onnxscript  # noqa: F401
    except ImportError:
        raise MissingExtraError(f"export needs onnx: {install_hint('export')}") from None


def write_onnx(model, out: Path, meta: dict, opset: int = 18) -> dict:
    """Export model's recurrent step to `out` and write its metadata (meta + the state layout) beside it."""
    _require_onnx()
    step = RecurrentStep(model.eval()).eval()
    n = 2  # example batch; the batch axis is exported as dynamic
    state = flatten_state(model.initial_state(n))
    example = (
        torch.zeros(n, model.obs_dim),
        torch.zeros(n, 1),
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, model.act_dim),
        torch.ones(n, 1),
        *state,
    )
    state_in = [f"state_in_{i}" for i in range(len(state))]
    state_out = [f"state_out_{i}" for i in range(len(state))]
    inputs = ["obs", "rtg", "timestep", "prev_action", "first", *state_in]
    batch_dim = model.backbone.state_batch_dim
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic = tuple({0: batch} for _ in range(5)) + (tuple({batch_dim: batch} for _ in state),)
    # torch.export-based exporter with onnxscript's optimizer: a smaller and faster graph than the TorchScript
    # exporter's for the same step (node counts and latency in docs/speed.md section 4b).
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    try:
        with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the exporter's progress lines and warnings are not the user's concern
            program = torch.onnx.export(
                step,
                example,
                input_names=inputs,
                output_names=["action", *state_out],
                dynamic_shapes=dynamic,
                opset_version=opset,
                dynamo=True,
                optimize=True,
            )
    finally:
        onnx_logger.setLevel(level)
    meta = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "onnx": Path(out).name,
        **meta,
        "obs_dim": model.obs_dim,
        "act_dim": model.act_dim,
        "max_ep_len": model.max_ep_len,
        "token_layout": model.token_layout,
        "backbone": model.backbone_name,
        "state": [
            {"input": i, "output": o, "shape": list(t.shape), "batch_dim": batch_dim}
            for i, o, t in zip(state_in, state_out, state)
        ],
    }
    _write_pair(Path(out), program.save, meta)
    return meta


def _write_pair(out: Path, save_onnx, meta: dict) -> None:
    """Both files into hidden temporaries beside them, then renamed into place: a failure (a full disk, a
    read-only folder) leaves no half-written file and any earlier export as it was. The JSON records the
    graph's SHA-256, so the runner refuses a JSON beside another export's graph."""
    meta_path = out.with_suffix(".json")
    try:
        with replaced_atomically(out, meta_path) as (tmp_onnx, tmp_meta):
            save_onnx(str(tmp_onnx))
            meta["onnx_sha256"] = hashlib.sha256(tmp_onnx.read_bytes()).hexdigest()
            tmp_meta.write_text(json.dumps(meta, indent=1))
    except OSError as exc:
        raise UsageError(f"cannot write {out} and {meta_path.name}: {exc.strerror or exc}") from None


def check_export_target(out: Path, force: bool) -> None:
    """`export` writes OUT.onnx and OUT.json: neither may replace a file unless --force, and --force replaces
    only an earlier export (an OUT.json that export wrote, with its OUT.onnx), never a file of the user's."""
    meta_path = out.with_suffix(".json")
    existing, ours = earlier_output([out, meta_path], meta_path, lambda doc: doc.get("format") == EXPORT_FORMAT)
    if not existing:
        return
    names = " and ".join(str(p) for p in existing)
    if not force:
        raise UsageError(f"--out {out}: {names} already exist(s); pass --force to replace an earlier export")
    if not ours:
        raise UsageError(
            f"--force refused: {names} is not an earlier export (no {meta_path.name} written by export beside "
            f"{out.name}); nothing was replaced"
        )


def export_onnx(checkpoint, out: str | Path, force: bool = False) -> dict:
    """Write OUT (.onnx) and OUT with .json for a checkpoint; returns the JSON metadata. force: replace an
    earlier export at OUT (check_export_target)."""
    _require_onnx()

    out = Path(out)
    if out.suffix != ".onnx":
        raise UsageError(f"--out {out} must end in .onnx")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: directory {out.parent} does not exist")
    check_export_target(out, force)
    ckpt, cfg, data, model = model_from_checkpoint(checkpoint, "cpu")
    if not model.recurrent:
        raise CheckpointError(
            f"the {cfg.model.backbone} backbone has no O(1) recurrent step to export; "
            "use load_policy(run, mode='window') in torch"
        )
    low, high = action_bounds(env_of(data))
    return write_onnx(
        model,
        out,
        {
            "checkpoint": str(ckpt.path),
            "step": ckpt.step,
            "env_id": data.env_id,
            "obs_mean": data.obs_norm.mean.tolist(),
            "obs_std": data.obs_norm.std.tolist(),
            "rtg_scale": cfg.data.rtg_scale,
            "target_returns": eval_targets(cfg, data),
            "action_low": low.tolist(),
            "action_high": high.tolist(),
            "ref_scores": data.to_dict()["ref_scores"],
            # The observation view (views.py), which the runner applies to the env's full observations.
            "view": data.view.to_dict(),
        },
    )
