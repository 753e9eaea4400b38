"""The package's layers (docs/ARCHITECTURE.md): no import cycles, no import upwards.

A module may import from its own sub-package and from sub-packages of a lower
layer, never from one of the same or a higher layer; ``diffsd`` imports
nothing from ``diffam``. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Layer of each sub-package of diffam (higher layers may import lower ones).
LAYERS = {
    "core": 0,
    "localize": 1,
    "evaluation": 1,
    "fit": 2,
    "authoring": 3,
    "export": 3,
    "cli": 4,
    "": 5,  # diffam/__init__.py and diffam/api.py: the public face
}
MAX_MODULE_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    for node in ast.walk(tree):  # annotations only: not imported at run time
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in ("diffam", "diffsd")}


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in (ROOT / package).rglob("*.py")}


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def test_every_subpackage_has_a_layer():
    found = {p.name for p in (ROOT / "diffam").iterdir() if (p / "__init__.py").exists()}
    assert found <= set(LAYERS), f"add {sorted(found - set(LAYERS))} to LAYERS and the docs"


def test_no_import_goes_up_or_sideways():
    modules = _modules("diffam")
    bad = []
    for name, path in modules.items():
        own = _subpackage(name)
        for target in _imports(path):
            if target.startswith("diffsd") or target not in modules:
                continue
            other = _subpackage(target)
            if other != own and LAYERS[other] >= LAYERS[own]:
                bad.append(f"{name} -> {target}")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_diffsd_does_not_import_diffam():
    for name, path in _modules("diffsd").items():
        assert not any(t.startswith("diffam") for t in _imports(path)), name


@pytest.mark.parametrize("package", ["diffam", "diffsd"])
def test_no_import_cycles(package):
    modules = _modules(package)
    graph = {n: {t for t in _imports(p) if t in modules and t != n} for n, p in modules.items()}
    # a package imports its own modules (re-exports); only edges between modules count
    graph = {n: {t for t in ts if not n.startswith(t + ".") and not t.startswith(n + ".")}
             for n, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_module_over_the_size_limit():
    long = {name: n for name, p in _modules("diffam").items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these modules: {long}"
