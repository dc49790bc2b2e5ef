"""Experiment configuration: nested dataclasses, YAML files holding only what differs from the defaults,
and dotted overrides (`--set model.backbone=minlstm`). OmegaConf's structured configs check keys and types:
an unknown key or a value of the wrong type is a ConfigError with one line.

Defaults are the Decision Transformer's recipe (kzl/decision-transformer gym/experiment.py): K=20,
embed 128, 3 layers, 1 head, dropout 0.1, AdamW lr 1e-4 / weight decay 1e-4, 10k linear warmup, grad clip
0.25, batch 64, 100k steps. Values derived from the data (dims, normalization) are never written here: they
live with the checkpoint.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .choices import (
    AMP_MODES,
    BACKBONE_REGISTRY,
    DEVICES,
    DROPOUT_IMPLS,
    EMBED_INITS,
    LOGGERS,
    LR_SCHEDULES,
    OBS_VIEWS,
    POLICY_MODES,
    SAMPLER_MODES,
    SCAN_METHODS,
    TOKEN_LAYOUTS,
    backbone_names,
)
from .errors import ConfigError, first_line
from .resources import find_config, resolve_data_path
from .rundir import write_atomic
from .views import ViewError, check_flicker


def rule(default, *, choices=None, positive=False, finite=False, nonnegative=False):
    """A field's default with its allowed values beside it: `choices` (a tuple of names), `positive` (> 0),
    `finite` (no NaN or inf), `nonnegative` (>= 0). validate() checks every field by these; only the rules
    between fields are written out there."""
    rules = {"choices": choices, "positive": positive, "finite": finite, "nonnegative": nonnegative}
    return field(default=default, metadata={k: v for k, v in rules.items() if v})


@dataclass
class DataConfig:
    source: list[str] = field(default_factory=list)  # Minari ids / D4RL hdf5 paths, concatenated
    env_id: str | None = None  # evaluation env; default from the data (Minari spec or D4RL file name)
    env_version: str = "v5"  # MuJoCo env version for D4RL files (v5 or v4)
    rtg_scale: float = rule(1000.0, finite=True)  # return-to-go divided by this (DT: 1000 for locomotion)
    max_ep_len: int = rule(1000, positive=True)  # rows of the timestep embedding; later steps share the last row
    context_len: int = rule(20, positive=True)  # K
    sampler_mode: str = rule("window", choices=SAMPLER_MODES)  # window (DT) | episode (whole episodes, K = longest)
    # What the model sees of each observation (views.py): full | positions | velocities | flicker. The same
    # view applies to the offline data and to every env the run acts in; the checkpoint records it.
    observe: str = rule("full", choices=OBS_VIEWS)
    flicker_p: float | None = None  # observe=flicker: the probability that a frame is dropped, in (0, 1)
    # The dataset's name in reports (final.json's "label"): a grid sets its dataset label here, so that report
    # groups runs by it without parsing run names; default (null): the data's own name.
    label: str | None = None


@dataclass
class ModelConfig:
    backbone: str = "mingru"  # mingru | minlstm | transformer | gru | lstm
    embed_dim: int = rule(128, positive=True)  # token width (DT: 128)
    n_layers: int = rule(3, positive=True)  # blocks of the backbone (DT: 3)
    n_heads: int = rule(1, positive=True)  # transformer only
    dropout: float = rule(0.1, finite=True)  # on the embeddings and inside every block (DT: 0.1)
    # The dropout mask generator (nn/dropout.py): torch (nn.Dropout, DT's recipe as published) | fast (16-bit
    # lanes of bulk random words, a few elementwise ops; docs/speed.md section 3b). gru / lstm keep torch's
    # dropout between their layers, inside the fused kernel.
    dropout_impl: str = rule("torch", choices=DROPOUT_IMPLS)
    # interleaved (R, s, a) per step | fused (one token per step)
    token_layout: str = rule("interleaved", choices=TOKEN_LAYOUTS)
    # Init of the return/state/action/timestep embeddings and the action head. torch: torch's defaults, as
    # kzl/decision-transformer (the timestep table starts N(0, 1)); gpt2: N(0, 0.02) weights and zero biases,
    # as transformers' DecisionTransformerModel and CORL's dt.py. Each backbone keeps its own init.
    embed_init: str = rule("torch", choices=EMBED_INITS)
    expansion: float = rule(1.0, finite=True)  # minRNN hidden width / embed_dim
    mlp_ratio: float = rule(4.0, finite=True, nonnegative=True)  # minRNN blocks: MLP width / embed_dim (0 = no MLP)
    conv_kernel: int = rule(0, nonnegative=True)  # minRNN blocks: causal depthwise conv kernel (0 = off)
    forget_bias: float | None = None  # minLSTM forget-gate bias at init
    scan: str = rule("auto", choices=("auto", *SCAN_METHODS))  # auto | sequential | chunked | log
    compile_gates: bool = False  # minRNN: torch.compile the gate math of the training forward (see nn/compiled.py)
    time_chunk: int = 128  # minRNN on CPU: sequences longer than this run in chunks with the carried state (0: off)


@dataclass
class TrainConfig:
    steps: int = rule(100_000, positive=True)  # optimizer updates (DT: 100k)
    batch_size: int = rule(64, positive=True)  # windows per batch, or whole episodes with data.sampler_mode=episode
    lr: float = rule(1e-4, finite=True)  # AdamW's peak rate, reached after the warmup (DT: 1e-4)
    weight_decay: float = rule(1e-4, finite=True, nonnegative=True)  # AdamW's (DT: 1e-4)
    warmup_steps: int = 10_000  # linear warmup from 0 (DT: 10k); refused when longer than train.steps
    # constant (DT) | cosine | linear: the decay after warmup, down to min_lr
    lr_schedule: str = rule("constant", choices=LR_SCHEDULES)
    min_lr: float = rule(0.0, finite=True)  # floor of the cosine / linear decay, reached at train.steps
    grad_clip: float = rule(0.25, finite=True)  # gradient-norm clip (DT: 0.25)
    seed: int = rule(0, nonnegative=True)  # the model's init, the batches and dropout all follow from it
    # Several seeds in one process, one vmapped step for all (update.SeedGroup); each goes to RUN/seed<N> as
    # a complete run of its own. Empty: train.seed alone. docs/speed.md section 10 has its speed.
    seeds: list[int] = field(default_factory=list)
    device: str = rule("auto", choices=DEVICES)  # auto (CUDA when present) | cpu | cuda
    # none | bf16 (autocast; the scan stays float32) | auto: bf16 on a CPU with native bf16 (AVX512-BF16 or AMX)
    # or a CUDA device with bf16, float32 elsewhere (device.resolve_amp); config.yaml keeps the resolved choice.
    # auto is the default because bf16 left hopper-medium's scores and fit where float32 had them (docs/speed.md
    # section 3c); the committed float32 grids pin train.amp=none so that a resume on a bf16 machine keeps their
    # protocol.
    amp: str = rule("auto", choices=AMP_MODES)
    compile: bool = False  # torch.compile the model
    threads: int = rule(0, nonnegative=True)  # torch CPU threads (0 = torch's default)
    log_every: int = rule(100, positive=True)  # steps between logged training scalars
    checkpoint_every: int = rule(1000, positive=True)  # steps between checkpoints (one is always written at the end)
    eval_every: int = 0  # 0: evaluate once, at the end
    keep_checkpoints: int = rule(2, positive=True)  # newest step checkpoints kept (best is kept apart)
    keep_best: bool = False  # also keep RUN/checkpoints/best: the evaluation with the best headline score
    loggers: list[str] = field(default_factory=lambda: ["tensorboard", "csv"])  # tensorboard | csv | wandb
    wandb_project: str = "decision-minrnn"  # with train.loggers including wandb


@dataclass
class EvalConfig:
    episodes: int = 10  # per target, at every evaluation during training (the ones keep_best selects on)
    # Episodes per target of a final test evaluation on seeds of its own (test_seed + i), which the run's
    # score (final.json "eval") and its best checkpoint's test score are taken from. 0: no test evaluation;
    # the score is the last training evaluation's (eval.episodes from eval.seed). DT and CORL score 100.
    final_episodes: int = rule(0, nonnegative=True)
    # disjoint from eval.seed + [0, eval.episodes) (config.validate checks it)
    test_seed: int = rule(1_000_000, nonnegative=True)
    # auto (recurrent if the backbone can step, else window) | recurrent | window
    mode: str = rule("auto", choices=POLICY_MODES)
    target_returns: list[float] | None = None  # raw returns; default: DT's per-task targets
    seed: int = rule(0, nonnegative=True)  # episode i uses seed + i
    max_steps: int = rule(1000, positive=True)  # steps per evaluation episode at most (the MuJoCo tasks end at 1000)


@dataclass
class Config:
    name: str = "run"  # the run's name (default: the config file's); runs go to RUNS_ROOT/<name>
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _settings(cfg: Config):
    """(section, key, value, rules) of every setting, rules from the field's rule(...) metadata."""
    for section in ("data", "model", "train", "eval"):
        part = getattr(cfg, section)
        for f in fields(part):
            yield section, f.name, getattr(part, f.name), f.metadata


def _error_line_with_key(exc: Exception) -> str:
    line = first_line(exc)
    key = getattr(exc, "full_key", None)  # OmegaConf names the offending key here
    return f"{key}: {line}" if key and key not in line else line


def validate(cfg: Config, new_run: bool = False) -> Config:
    """Keys, types, ranges and the rules between fields. new_run: also the rules for a run about to start
    (_check_budget: a budget that cannot learn, settings that would do nothing), which a saved config read back
    (a checkpoint's, written before a rule existed) is not held to."""
    settings = list(_settings(cfg))
    for section, key, value, rules in settings:  # each field's allowed values (rule(...) at the field)
        choices = backbone_names() if (section, key) == ("model", "backbone") else rules.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{section}.{key}={value!r} is not one of {', '.join(choices)}")
    for section, key, value, rules in settings:
        if rules.get("positive") and value <= 0:
            raise ConfigError(f"{section}.{key} must be > 0")
    for section, key, value, rules in settings:
        if rules.get("finite") and not math.isfinite(value):
            raise ConfigError(f"{section}.{key}={value} is not a finite number")
    if cfg.model.forget_bias is not None and not math.isfinite(cfg.model.forget_bias):
        raise ConfigError(f"model.forget_bias={cfg.model.forget_bias} is not a finite number")
    if cfg.train.grad_clip <= 0:
        raise ConfigError(f"train.grad_clip={cfg.train.grad_clip} must be > 0 (it is the gradient-norm bound)")
    seeds = cfg.train.seeds
    if seeds and (len(set(seeds)) != len(seeds) or min(seeds) < 0):
        raise ConfigError(f"train.seeds={list(seeds)} must be distinct integers >= 0")
    if len(seeds) > 1 and cfg.train.compile:
        raise ConfigError("train.compile does not apply to a seed group (train.seeds); train the seeds one by one")
    for section, key, value, rules in settings:
        if rules.get("nonnegative") and value < 0:
            raise ConfigError(f"{section}.{key}={value} must be >= 0")
    for target in cfg.eval.target_returns or []:
        if not math.isfinite(target):
            raise ConfigError(f"eval.target_returns holds {target}; target returns must be finite")
    unknown = sorted(set(cfg.train.loggers) - set(LOGGERS))
    if unknown:
        raise ConfigError(f"train.loggers has {', '.join(unknown)}; choose from {', '.join(LOGGERS)}")
    _check_backbone_settings(cfg.model)
    if cfg.data.context_len > cfg.data.max_ep_len:
        raise ConfigError(
            f"data.context_len={cfg.data.context_len} is longer than any episode can be "
            f"(data.max_ep_len={cfg.data.max_ep_len}); use data.sampler_mode=episode for whole episodes"
        )
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise ConfigError("model.dropout must be in [0, 1)")
    if cfg.train.lr <= 0 or cfg.data.rtg_scale <= 0 or cfg.model.expansion <= 0:
        raise ConfigError("train.lr, data.rtg_scale and model.expansion must be > 0")
    if not 0.0 <= cfg.train.min_lr <= cfg.train.lr:
        raise ConfigError(f"train.min_lr={cfg.train.min_lr} must be in [0, train.lr={cfg.train.lr}]")
    if cfg.eval.episodes < 0 or cfg.train.eval_every < 0 or cfg.train.warmup_steps < 0:
        raise ConfigError("eval.episodes, train.eval_every and train.warmup_steps must be >= 0")
    _check_test_seeds(cfg.eval)
    _check_view(cfg.data)
    if new_run:
        _check_budget(cfg)
    if cfg.model.backbone == "transformer" and cfg.model.embed_dim % cfg.model.n_heads:
        raise ConfigError(
            f"model.embed_dim={cfg.model.embed_dim} is not divisible by model.n_heads={cfg.model.n_heads}"
        )
    return cfg


def _check_test_seeds(ev: EvalConfig) -> None:
    """The test episodes never reuse a selection episode's seed: a best checkpoint scored on the episodes it
    was chosen on is optimistic by construction."""
    if ev.final_episodes and ev.test_seed < ev.seed + ev.episodes and ev.seed < ev.test_seed + ev.final_episodes:
        raise ConfigError(
            f"eval.test_seed={ev.test_seed} makes the test episodes' seeds [{ev.test_seed}, "
            f"{ev.test_seed + ev.final_episodes}) overlap the training evaluations' [{ev.seed}, "
            f"{ev.seed + ev.episodes}); move eval.test_seed"
        )


def _check_budget(cfg: Config) -> None:
    """Settings that would silently do nothing, or a budget that cannot learn, refused at load time (before
    a whole run is spent), each naming the setting to change."""
    t, ev = cfg.train, cfg.eval
    if t.warmup_steps > t.steps:
        raise ConfigError(
            f"train.warmup_steps={t.warmup_steps} is longer than the run (train.steps={t.steps}): the learning "
            f"rate would never reach train.lr; lower train.warmup_steps (DT's 10% is {max(1, t.steps // 10)})"
        )
    if t.eval_every > t.steps:
        raise ConfigError(
            f"train.eval_every={t.eval_every} is beyond train.steps={t.steps}: no evaluation would run during "
            "training; lower it, or set 0 to evaluate only at the end"
        )
    if ev.episodes == 0:
        for setting, value in (("train.keep_best", t.keep_best), ("train.eval_every", t.eval_every)):
            if value:
                raise ConfigError(f"{setting}={value} needs evaluations, but eval.episodes=0 runs none; set both")
        if ev.final_episodes:
            raise ConfigError(
                f"eval.final_episodes={ev.final_episodes} needs eval.episodes > 0 (the test evaluation follows the "
                "last training evaluation); set eval.episodes"
            )
    if cfg.data.sampler_mode == "episode" and cfg.data.context_len != DataConfig().context_len:
        raise ConfigError(
            f"data.context_len={cfg.data.context_len} does not apply to data.sampler_mode=episode (a batch is as "
            "long as its longest episode, and the policy acts on whole episodes); remove it"
        )


def _check_view(data: DataConfig) -> None:
    try:
        check_flicker(data.observe, data.flicker_p)
    except ViewError as exc:
        raise ConfigError(str(exc)) from None


def _check_backbone_settings(model: ModelConfig) -> None:
    """A setting the chosen backbone would silently ignore is an error (left at its default, it is fine)."""
    defaults = ModelConfig()
    readers: dict[str, list[str]] = {}
    for name, spec in BACKBONE_REGISTRY.items():
        for key in spec.settings:
            readers.setdefault(key, []).append(name)
    for key, backbones in readers.items():
        value = getattr(model, key)
        if model.backbone not in backbones and value != getattr(defaults, key):
            raise ConfigError(
                f"model.{key}={value} does not apply to the {model.backbone} backbone "
                f"(only to {', '.join(backbones)}); remove it"
            )
    if model.time_chunk < 0:
        raise ConfigError(f"model.time_chunk={model.time_chunk} must be >= 0 (0 turns time chunking off)")


# What `train --resume` may change: how the run is evaluated, logged and checkpointed, where it runs, and (under a
# constant learning rate) how long. Everything else changes what was trained, and a resumed run's config.yaml and
# final.json would claim the new value for the whole run, so a resume refuses it (resume_changes).
RESUME_MAY_CHANGE = (
    "eval.",
    "train.log_every",
    "train.checkpoint_every",
    "train.eval_every",
    "train.keep_checkpoints",
    "train.loggers",
    "train.wandb_project",
    "train.threads",
    "train.device",
    "train.steps",
    "name",
    "data.label",
)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_changes(saved: Config, requested: Config, resolved_amp: str | None = None) -> list[str]:
    """The settings a resume would change that it may not, as 'key (saved -> requested)'. resolved_amp: what
    the requested train.amp resolves to here (the saved config holds the resolved choice)."""
    before, after = _flat(config_to_dict(saved)), _flat(config_to_dict(requested))
    if resolved_amp is not None:
        after["train.amp"] = resolved_amp
    changed = []
    for key, value in after.items():
        if before.get(key) == value or key.startswith(RESUME_MAY_CHANGE[0]) or key in RESUME_MAY_CHANGE[1:]:
            continue
        changed.append(f"{key} ({before.get(key)} -> {value})")
    if before["train.steps"] != after["train.steps"] and before["train.lr_schedule"] != "constant":
        changed.append(
            f"train.steps ({before['train.steps']} -> {after['train.steps']}, under train.lr_schedule="
            f"{before['train.lr_schedule']}, whose decay was planned over the first)"
        )
    return changed


def _source_as_list(d: dict) -> dict:
    """Allow `source: one/id-v0` (or `data.source=a+b`) where a list is expected."""
    data = d.get("data")
    if isinstance(data, dict) and isinstance(data.get("source"), str):
        return {**d, "data": {**data, "source": [data["source"]]}}  # a copy: the caller's dict stays as it was
    return d


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """A YAML file that must hold a mapping, read by OmegaConf's loader (which refuses a key given twice, where
    PyYAML keeps the last one silently: a grid with two datasets of one label would train one of them under the
    other's name); anything else is a ConfigError naming the file. Interpolations stay unresolved strings."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{what} file {path} does not exist")
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(file))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or _error_line_with_key(exc)
        raise ConfigError(f"{what} file {path} is not valid YAML{where}: {problem}") from None
    except (OmegaConfBaseException, ValueError, TypeError) as exc:  # e.g. a key OmegaConf cannot hold
        raise ConfigError(f"{what} file {path}: {_error_line_with_key(exc)}") from None
    except OSError as exc:  # OmegaConf's word for a file holding a scalar
        if "loaded object type" not in str(exc):
            raise ConfigError(f"{what} file {path} cannot be read: {first_line(exc)}") from None
        loaded = None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} file {path} must hold a mapping")
    return loaded


@functools.cache
def _schema():
    """The defaults as an OmegaConf schema, built once: building it is most of a config's load time
    (docs/speed.md section 12), and OmegaConf.merge copies its first argument, never changes it."""
    return OmegaConf.structured(Config)


def _merged(*layers: dict, overrides: list[str] | None = None, new_run: bool = False) -> Config:
    """Defaults <- each layer <- the dotted overrides (`a.b=value`, later ones win), in one merge; unknown keys
    and wrong types are one ConfigError."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
    try:
        dotted = OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides or [])))
        merged = OmegaConf.merge(_schema(), *(_source_as_list(layer) for layer in (*layers, dotted)))
        return validate(OmegaConf.to_object(merged), new_run)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad config: {_error_line_with_key(exc)}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- YAML file <- dotted overrides (`a.b=value`), checked for unknown keys and types."""
    loaded = {}
    if path is not None:
        path = find_config(path)  # a file, or a packaged config by name (`decision-minrnn configs`)
        loaded = read_yaml_mapping(path, "config")
        if "name" not in loaded:
            loaded["name"] = Path(path).stem
    cfg = _merged(loaded, overrides=overrides, new_run=True)
    # pkg: names and hdf5 paths relative to the config file become real paths (resources.py).
    # 'a+b' becomes [a, b]: the same concatenation (data/episodes.py load_source).
    cfg.data.source = [
        resolve_data_path(part.strip(), path)
        for item in cfg.data.source
        for part in str(item).split("+")
        if part.strip()
    ]
    return cfg


def config_to_dict(cfg: Config) -> dict:
    return asdict(cfg)


def config_from_dict(d: dict, overrides: list[str] | None = None) -> Config:
    """A saved config (e.g. from a checkpoint), with optional dotted overrides on top."""
    return _merged(d, overrides=overrides)


def save_config(cfg: Config, path: Path) -> None:
    write_atomic(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
