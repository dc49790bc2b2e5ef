"""Grids of runs: datasets x backbones x seeds, expanded from a YAML file into run specs.

A grid file (configs/grids/NAME.yaml):

    name: bench-medium                  # runs go to RUNS_ROOT/NAME/<dataset>/<backbone>/seed<seed>
    datasets:                           # label -> experiment config (only what differs from the defaults)
      hopper-medium: configs/bench/hopper-medium.yaml
    backbones: [mingru, minlstm, transformer]
    seeds: [0, 1, 2]
    set: [train.steps=20000]            # dotted overrides for every run (optional)
    backbone_set:                       # dotted overrides per backbone (optional)
      transformer: [model.dropout=0.1]

Dataset labels are the D4RL names (hopper-medium, ...) so the report can put the published numbers beside ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config, load_config, read_yaml_mapping
from ..errors import ConfigError
from ..resources import find_config

GRID_KEYS = {"name", "datasets", "backbones", "seeds", "set", "backbone_set"}


@dataclass
class RunSpec:
    dataset: str
    backbone: str
    seed: int
    config_path: str
    overrides: list[str] = field(default_factory=list)

    @property
    def relative_dir(self) -> Path:
        return Path(self.dataset) / self.backbone / f"seed{self.seed}"

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


def load_grid(path: str | Path) -> Grid:
    file = find_config(path, "grid")  # a file, or a packaged grid by name
    spec = read_yaml_mapping(file, "grid")
    unknown = set(spec) - GRID_KEYS
    if unknown:
        raise ConfigError(f"grid file {path}: unknown key(s) {', '.join(sorted(unknown))}")
    datasets, backbones, seeds = spec.get("datasets"), spec.get("backbones"), spec.get("seeds", [0])
    if not isinstance(datasets, dict) or not datasets:
        raise ConfigError(f"grid file {path}: 'datasets' must map labels to config files")
    if not isinstance(backbones, list) or not backbones or not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"grid file {path}: 'backbones' and 'seeds' must be non-empty lists")
    # bool is an int to Python and 1.7 would truncate to 1: neither is a seed.
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"grid file {path}: 'seeds' must be integers >= 0, got {seeds}")
    if not all(isinstance(b, str) for b in backbones):
        raise ConfigError(f"grid file {path}: 'backbones' must be names, got {backbones}")
    for what, values in (("seeds", seeds), ("backbones", backbones)):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ConfigError(f"grid file {path}: '{what}' lists {', '.join(repeated)} more than once")
    name = str(spec.get("name") or file.stem)
    for what, value in [("name", name), *[("dataset label", str(label)) for label in datasets]]:
        _check_path_component(path, what, value)
    common = [str(x) for x in spec.get("set") or []]
    per_backbone = spec.get("backbone_set") or {}
    if not isinstance(per_backbone, dict) or set(per_backbone) - set(backbones):
        extra = sorted(set(per_backbone) - set(backbones)) if isinstance(per_backbone, dict) else per_backbone
        raise ConfigError(f"grid file {path}: backbone_set names {extra}, which is not among backbones {backbones}")
    runs = []
    for label, config_path in datasets.items():
        config_path = Path(config_path)
        if not config_path.is_absolute() and not config_path.exists():
            config_path = file.parent / config_path
        sources = _absolute_sources(config_path)
        # Seeds outermost, backbones inner: a grid stopped half way has the same seeds for every backbone.
        for seed in seeds:
            for backbone in backbones:
                overrides = [
                    f"data.source=[{','.join(sources)}]",
                    f"model.backbone={backbone}",
                    f"train.seed={int(seed)}",
                    f"name={label}/{backbone}/seed{int(seed)}",
                    f"data.label={label}",
                    *common,
                    *[str(x) for x in per_backbone.get(backbone, [])],
                ]
                run = RunSpec(str(label), str(backbone), int(seed), str(config_path.resolve()), overrides)
                run.config()  # fail now, not inside a worker, when a combination is invalid
                runs.append(run)
    return Grid(name, runs)
