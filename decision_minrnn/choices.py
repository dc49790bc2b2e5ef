"""The allowed values of every enumerated setting, in one place: the modules that implement them and the
config that validates them both import from here (no torch import, so the config stays light)."""

BACKBONES = ("mingru", "minlstm", "transformer", "gru", "lstm")  # models/backbones.py
TOKEN_LAYOUTS = ("interleaved", "fused")  # models/decision.py
EMBED_INITS = ("torch", "gpt2")  # models/decision.py: init of the token embeddings and the action head
SCAN_METHODS = ("log", "sequential", "chunked")  # nn/scan.py; "auto" picks one per device
SAMPLER_MODES = ("window", "episode")  # data/sampler.py
POLICY_MODES = ("auto", "recurrent", "window")  # policy.py, eval.mode
LOGGERS = ("tensorboard", "csv", "wandb")  # loggers.py
LR_SCHEDULES = ("constant", "cosine", "linear")  # update.py lr_at
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("none", "bf16", "auto")  # device.resolve_amp: auto = bf16 where the hardware has it
DROPOUT_IMPLS = ("torch", "fast")  # nn/dropout.py: the dropout mask generator
