"""Grids of runs: datasets x backbones x seeds, expanded from a YAML file into run specs.

A grid file (configs/grids/NAME.yaml):

    name: bench-medium                  # runs go to RUNS_ROOT/NAME/<dataset>/<backbone>/seed<seed>
    datasets:                           # label -> experiment config: a file (relative to the grid's folder or
      hopper-medium: configs/bench/hopper-medium.yaml   # the working directory), or a packaged config name
      walker2d-medium: bench/walker2d-medium            # as `decision-minrnn configs` lists them
    backbones: [mingru, minlstm, transformer]
    seeds: [0, 1, 2]
    set: [train.steps=20000]            # dotted overrides for every run (optional; `sweep --set` adds more)
    backbone_set:                       # dotted overrides per backbone (optional)
      transformer: [model.dropout=0.1]

A dataset may also carry overrides of its own, and `arms` may replace `backbones` where the compared settings
are not one backbone each (a backbone trained two ways); an arm names its backbone and its overrides, and
its name is the run's second path component (RUNS_ROOT/NAME/<dataset>/<arm>/seed<seed>):

    datasets:
      hopper-medium-velocities:
        config: configs/memory/hopper-medium.yaml
        set: [data.observe=velocities]
        arm_set: {mingru-episodes: [train.steps=1805]}  # overrides for one arm on this dataset only
    arms:
      mingru-k20: {backbone: mingru}
      mingru-episodes: {backbone: mingru, set: [data.sampler_mode=episode, train.batch_size=8]}

Dataset labels are the D4RL names (hopper-medium, ...) so the report can put the published numbers beside ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config, load_config, read_yaml_mapping
from ..errors import ConfigError
from ..resources import find_config
from ..rundir import RunDir

GRID_KEYS = {"name", "datasets", "backbones", "arms", "seeds", "set", "backbone_set"}


@dataclass
class RunSpec:
    dataset: str
    backbone: str  # the backbone's name, or the arm's in a grid of arms: the run's second path component
    seed: int
    config_path: str
    overrides: list[str] = field(default_factory=list)

    @property
    def relative_dir(self) -> Path:
        return RunDir(Path(self.dataset) / self.backbone).member(self.seed).root

    def config(self) -> Config:
        return load_config(self.config_path, self.overrides)


@dataclass
class Grid:
    name: str
    runs: list[RunSpec]


def _absolute_sources(config_path: Path) -> list[str]:
    """Data files named relative to the working directory become absolute, so Ray workers find them."""
    cfg = load_config(config_path)
    return [str(Path(s).resolve()) if Path(s).is_file() else s for s in cfg.data.source]


def _check_path_component(path, what: str, value: str) -> None:
    """Grid names and dataset labels become directories under the runs root: one plain component each."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or Path(value).is_absolute():
        raise ConfigError(f"grid file {path}: {what} {value!r} must be a plain directory name (no '/', '..')")


def load_grid(path: str | Path, every_run: list[str] | None = None) -> Grid:
    """The runs of a grid file (or a packaged grid by name); every_run: dotted settings for every run, applied
    last (`sweep --set`)."""
    file = find_config(path, "grid")  # a file, or a packaged grid by name
    spec = read_yaml_mapping(file, "grid")
    unknown = set(spec) - GRID_KEYS
    if unknown:
        raise ConfigError(f"grid file {path}: unknown key(s) {', '.join(sorted(unknown))}")
    datasets, seeds = spec.get("datasets"), spec.get("seeds", [0])
    if not isinstance(datasets, dict) or not datasets:
        raise ConfigError(f"grid file {path}: 'datasets' must map labels to config files")
    arms = _arms(path, spec, seeds)  # name -> (backbone, overrides)
    backbones = list(arms)
    # bool is an int to Python and 1.7 would truncate to 1: neither is a seed.
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"grid file {path}: 'seeds' must be integers >= 0, got {seeds}")
    for what, values in (("seeds", seeds), ("backbones", spec.get("backbones") or [])):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ConfigError(f"grid file {path}: '{what}' lists {', '.join(repeated)} more than once")
    name = str(spec.get("name") or file.stem)
    labels = [("dataset label", str(label)) for label in datasets]
    for what, value in [("name", name), *labels, *[("arm", a) for a in arms]]:
        _check_path_component(path, what, value)
    common = [str(x) for x in spec.get("set") or []]
    per_backbone = spec.get("backbone_set") or {}
    if not isinstance(per_backbone, dict) or set(per_backbone) - set(backbones):
        extra = sorted(set(per_backbone) - set(backbones)) if isinstance(per_backbone, dict) else per_backbone
        raise ConfigError(f"grid file {path}: backbone_set names {extra}, which is not among backbones {backbones}")
    runs = []
    for label, entry in datasets.items():
        config_path, dataset_set, arm_set = _dataset_entry(path, label, entry, backbones)
        if not config_path.is_absolute() and not config_path.exists():
            beside = file.parent / config_path
            # a file beside the grid, else a packaged config by name (as `decision-minrnn configs` lists them)
            config_path = beside if beside.exists() else find_config(config_path)
        sources = _absolute_sources(config_path)
        # Seeds outermost, backbones inner: a grid stopped half way has the same seeds for every backbone.
        for seed in seeds:
            for backbone in backbones:
                overrides = [
                    f"data.source=[{','.join(sources)}]",
                    f"model.backbone={arms[backbone][0]}",
                    f"train.seed={int(seed)}",
                    f"name={label}/{backbone}/seed{int(seed)}",
                    f"data.label={label}",
                    *common,
                    *dataset_set,
                    *[str(x) for x in per_backbone.get(backbone, [])],
                    *arms[backbone][1],
                    *arm_set.get(backbone, []),
                    *(every_run or []),
                ]
                run = RunSpec(str(label), str(backbone), int(seed), str(config_path.resolve()), overrides)
                run.config()  # fail now, not inside a worker, when a combination is invalid
                runs.append(run)
    return Grid(name, runs)


def _arms(path, spec: dict, seeds) -> dict[str, tuple[str, list[str]]]:
    """`backbones: [a, b]` (each its own arm) or `arms: {name: {backbone, set}}`, as name -> (backbone, set)."""
    backbones, arms = spec.get("backbones"), spec.get("arms")
    if backbones is not None and arms is not None:
        raise ConfigError(f"grid file {path}: give either 'backbones' or 'arms', not both")
    no_backbones = arms is None and (not isinstance(backbones, list) or not backbones)
    if not isinstance(seeds, list) or not seeds or no_backbones:
        raise ConfigError(f"grid file {path}: 'backbones' and 'seeds' must be non-empty lists")
    if arms is None:
        if not all(isinstance(b, str) for b in backbones):
            raise ConfigError(f"grid file {path}: 'backbones' must be names, got {backbones}")
        return {b: (b, []) for b in backbones}
    if not isinstance(arms, dict) or not arms:
        raise ConfigError(f"grid file {path}: 'arms' must map arm names to {{backbone, set}}")
    out = {}
    for name, arm in arms.items():
        if not isinstance(arm, dict) or not isinstance(arm.get("backbone"), str) or set(arm) - {"backbone", "set"}:
            raise ConfigError(f"grid file {path}: arm {name!r} must be a mapping with 'backbone' and optional 'set'")
        out[str(name)] = (arm["backbone"], [str(x) for x in arm.get("set") or []])
    return out


def _dataset_entry(path, label, entry, arms: list[str]) -> tuple[Path, list[str], dict[str, list[str]]]:
    """A dataset's config file, its own overrides and its per-arm ones: `label: FILE` or
    `label: {config: FILE, set: [...], arm_set: {arm: [...]}}`."""
    if not isinstance(entry, dict):
        return Path(str(entry)), [], {}
    if set(entry) - {"config", "set", "arm_set"} or "config" not in entry:
        raise ConfigError(f"grid file {path}: dataset {label!r} must be a config file or {{config, set, arm_set}}")
    arm_set = entry.get("arm_set") or {}
    if not isinstance(arm_set, dict) or set(arm_set) - set(arms):
        raise ConfigError(f"grid file {path}: dataset {label!r}'s arm_set names arms not in the grid: {arm_set}")
    per_arm = {str(a): [str(x) for x in v or []] for a, v in arm_set.items()}
    return Path(str(entry["config"])), [str(x) for x in entry.get("set") or []], per_arm
