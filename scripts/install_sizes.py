"""Disk size of the core install and of each extra, measured on an environment that has them all installed.

    pip install torch==2.13.0 && pip install -e ".[test,hf]" && python scripts/install_sizes.py

For the core and for each extra, the closure of its requirements is resolved from the installed packages'
metadata (markers evaluated here); the size of a package is the sum of the files its RECORD lists. An
extra's size is what it adds to the core. Prints JSON.
"""

import json
import re
from importlib import metadata

from packaging.requirements import Requirement


def _name(s):
    return re.sub(r"[-_.]+", "-", s).lower()


def closure(requirements, seen=None):
    seen = {} if seen is None else seen
    for req in requirements:
        key = (_name(req.name), tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen[key] = True
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        for raw in dist.requires or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                if sub.marker is not None and "extra" in str(sub.marker) and not req.extras:
                    continue
                closure([sub], seen)
    return {name for name, _ in seen}


def size_mb(dist_name):
    dist = metadata.distribution(dist_name)
    total = 0
    for f in dist.files or []:
        try:
            total += f.locate().stat().st_size
        except OSError:
            pass
    return total / 2**20


own = metadata.distribution("decision-minrnn")
reqs = [Requirement(r) for r in own.requires or []]
core = closure([r for r in reqs if r.marker is None])
extras = sorted({m for r in reqs if r.marker for m in re.findall(r'extra == "([^"]+)"', str(r.marker))})
installed = {_name(d.metadata["Name"]) for d in metadata.distributions()}
out = {"core": {"packages": len(core & installed), "MB": round(sum(size_mb(n) for n in core & installed))}}
for extra in extras:
    names = closure([r for r in reqs if r.marker and r.marker.evaluate({"extra": extra})]) - core
    present = names & installed
    out[extra] = {
        "adds_packages": len(present),
        "adds_MB": round(sum(size_mb(n) for n in present)),
        "missing_here": sorted(names - installed),
    }
print(json.dumps(out, indent=1))
