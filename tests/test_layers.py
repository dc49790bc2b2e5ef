"""The package's modules import in layers: no cycle among them, counting imports at module level and inside
functions alike (an import moved into a function to break a cycle hides the cycle, it does not remove it).
Run as a script, it prints the cycles and each module's function-level imports of the package."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "decision_minrnn"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The package modules an ImportFrom names: the module itself, or its submodules when names are modules."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{alias.name}" for alias in node.names]


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> package modules it imports, module -> those it imports inside a function)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    inner: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text())
        in_function = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                in_function.update(id(n) for n in ast.walk(fn) if n is not fn)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = _resolve(module, path.name == "__init__.py", node)
            else:
                continue
            targets = {n for n in names if n in files and n != module}
            graph[module] |= targets
            if id(node) in in_function:
                inner[module] |= targets
    return graph, inner


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# The only modules that import package modules inside functions, and why: each defers torch (or Ray) until
# a command needs it, so that `decision-minrnn --help`, `datasets list` and the Ray driver start fast.
LAZY_ON_PURPOSE = {
    "decision_minrnn": "load_policy on first use: `import decision_minrnn` without torch",
    "decision_minrnn.data": "the sampler (torch) on first use",
    "decision_minrnn.cli": "each subcommand's module when it runs",
    "decision_minrnn.commands": "train / evaluate / export when they run",
    "decision_minrnn.experiments.commands": "sweep / report / bench when they run",
    "decision_minrnn.experiments.sweep": "the trainer inside Ray workers, not in the driver",
}


def test_no_import_cycle_among_the_package_modules():
    graph, _ = import_graph()
    assert cycles(graph) == []


def test_imports_inside_functions_are_only_the_lazy_entry_points():
    _, inner = import_graph()
    assert {m for m, targets in inner.items() if targets} <= set(LAZY_ON_PURPOSE)


if __name__ == "__main__":
    graph, inner = import_graph()
    for component in cycles(graph):
        print("cycle:", " <-> ".join(component))
    for module, targets in sorted(inner.items()):
        if targets:
            print(f"{module}: imports inside functions: {', '.join(sorted(targets))}")
    sys.exit(1 if cycles(graph) else 0)
