"""Files that ship inside the package: the configs and grids of the repository's configs/ folder (installed as
`decision_minrnn.configs`) and the data under decision_minrnn/assets/.

* `--config quickstart` or `--config bench/hopper-medium`: a packaged config by name (see
  `decision-minrnn configs`); `--grid bench-cpu`: a packaged grid. A path to an existing file always wins.
* In a config's `data.source`, `pkg:assets/NAME.hdf5` names a file inside the installed package, so a config
  works from any directory after a non-editable install. A relative path resolves against the config file's
  directory when the file is there, else against the current directory (where `data/d4rl/...` is documented).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import ConfigError

PKG_PREFIX = "pkg:"


def package_dir() -> Path:
    return Path(str(resources.files("decision_minrnn")))


def configs_dir() -> Path:
    """Installed from a wheel: decision_minrnn/configs/ (pyproject maps the repository's configs/ there).
    From a source checkout or an editable install: the repository's configs/ beside the package."""
    inside = package_dir() / "configs"
    return inside if inside.is_dir() else package_dir().parent / "configs"


def packaged_configs() -> dict[str, list[str]]:
    """{"configs": [...], "grids": [...]}: names usable with --config and --grid."""
    root = configs_dir()
    names = sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))
    return {
        "configs": [n for n in names if not n.startswith("grids/")],
        "grids": [n.removeprefix("grids/") for n in names if n.startswith("grids/")],
    }


def find_config(name: str | Path, what: str = "config") -> Path:
    """An existing file, else a packaged config (or grid) by name; otherwise a ConfigError naming both."""
    path = Path(name)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"{what} {name} is a directory, not a YAML file")
    if not path.is_absolute() and ".." not in path.parts:
        root = configs_dir() / ("grids" if what == "grid" else "")
        for candidate in (root / path, root / f"{path}.yaml"):
            if candidate.is_file():
                return candidate
    listing = "decision-minrnn configs" + (" (grids)" if what == "grid" else "")
    raise ConfigError(f"{what} file {name} does not exist and is not a packaged {what} name (see `{listing}`)")


def resolve_data_path(source: str, config_file: Path | None) -> str:
    """pkg:REL -> the installed package's file; a relative hdf5 path next to the config file -> that file."""
    if source.startswith(PKG_PREFIX):
        return str(package_dir() / source[len(PKG_PREFIX) :])
    path = Path(source)
    if config_file is not None and not path.is_absolute() and path.suffix in (".hdf5", ".h5"):
        beside = Path(config_file).parent / path
        if beside.is_file():
            return str(beside)
    return source
