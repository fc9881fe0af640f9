"""The package's shape, as ARCHITECTURE.md asks it: nothing imports the engine but the service layer
and the lazy package face, and no two modules import each other, even only for type checking."""

from __future__ import annotations

import ast
import pathlib

import fastproxy

PACKAGE = pathlib.Path(fastproxy.__file__).resolve().parent
ENGINE_USERS = {"fastproxy.service", "fastproxy"}  # the lifecycle, and __init__'s lazy Engine


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every fastproxy module ``path`` imports, at any level (functions and TYPE_CHECKING included)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("fastproxy"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("fastproxy"):
                continue
            for alias in node.names:  # ``from . import logs`` imports the module fastproxy.logs
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
    found.discard(name)
    return found


def _exists(module: str) -> bool:
    relative = pathlib.Path(*module.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in PACKAGE.rglob("*.py")}


def test_no_module_imports_the_engine_but_the_service_layer():
    importers = {module for module, imports in _graph().items() if "fastproxy.engine" in imports}
    assert importers <= ENGINE_USERS, importers - ENGINE_USERS


def test_the_package_has_no_import_cycle():
    graph = _graph()
    # fastproxy/__init__ imports its submodules lazily by name (strings), never with an import
    # statement, so every edge here is a real one.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if target not in graph:
                continue
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target] if target in path else [module, target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles
