"""The allowed values of every enumerated setting, in one place: the modules that implement them and the
config that validates them both import from here (no torch import, so the config stays light)."""

from __future__ import annotations

from dataclasses import dataclass

from .views import VIEWS as OBS_VIEWS  # noqa: F401 - views.py needs numpy only: the ONNX runner loads it too


@dataclass(frozen=True)
class BackboneSpec:
    """What the package knows of a backbone without building it. Its class (models/backbones.py, the
    `Backbone` protocol) is registered under the same name; config validation, the memory estimate, reports,
    the shared tester and the export tests read this table."""

    settings: tuple[str, ...] = ()  # the ModelConfig fields only it reads; config.validate refuses them elsewhere
    attention: bool = False  # keeps (B, heads, L, L) attention scores per layer (memory.training_bytes)


_MINRNN = ("expansion", "mlp_ratio", "conv_kernel", "scan", "compile_gates", "time_chunk")
# In the order tables and reports list them: the paper's two minRNNs, DT's transformer, the classic RNNs.
BACKBONE_REGISTRY: dict[str, BackboneSpec] = {
    "mingru": BackboneSpec(_MINRNN),
    "minlstm": BackboneSpec(_MINRNN + ("forget_bias",)),
    "transformer": BackboneSpec(("n_heads",), attention=True),
    "gru": BackboneSpec(),
    "lstm": BackboneSpec(),
}
BACKBONES = tuple(BACKBONE_REGISTRY)  # the built-in ones; backbone_names() also sees ones registered since


def backbone_names() -> tuple[str, ...]:
    return tuple(BACKBONE_REGISTRY)


TOKEN_LAYOUTS = ("interleaved", "fused")  # models/layout.py
TOKENS_PER_STEP = {"interleaved": 3, "fused": 1}  # tokens per environment step of each layout
EMBED_INITS = ("torch", "gpt2")  # models/decision.py: init of the token embeddings and the action head
SCAN_METHODS = ("log", "sequential", "chunked")  # nn/scan.py; "auto" picks one per device
SAMPLER_MODES = ("window", "episode")  # data/sampler.py
POLICY_MODES = ("auto", "recurrent", "window")  # policy.py, eval.mode
LOGGERS = ("tensorboard", "csv", "wandb")  # loggers.py
LR_SCHEDULES = ("constant", "cosine", "linear")  # update.py lr_at
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("none", "bf16", "auto")  # device.resolve_amp: auto = bf16 where the hardware has it
DROPOUT_IMPLS = ("torch", "fast")  # nn/dropout.py: the dropout mask generator
