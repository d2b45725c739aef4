"""The import graph keeps the layers of docs/ARCHITECTURE.md: every arrow points down, no circles.

Read from the source with `ast` (every import, at the top of a module or inside a function, counts: a lazy
import is still an arrow), so it needs no database and runs in the fast suite.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hadr_portal"

# Bottom to top. A module may import its own layer's package and the ones below it; apps that share a rank are
# peers and import neither each other nor anything above. The wiring (settings, urls, celery, wsgi, asgi) sits
# outside the stack: it may import anything, and nothing but the wiring imports it.
LAYERS: dict[str, int] = {
    "adapters": 0,
    "core": 1,
    "accounts": 2,
    "runbooks": 2,
    "databases": 3,
    "backups": 4,
    "status": 5,
    "incidents": 6,
    "metrics": 7,
    "dashboard": 8,
    "demo": 9,
}
WIRING = {"settings", "urls", "celery", "wsgi", "asgi", ""}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every hadr_portal module (or name within one) this file imports, resolved to absolute names."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.add(name)
            # `from hadr_portal.status import tasks` imports the module hadr_portal.status.tasks
            found |= {
                f"{name}.{alias.name}"
                for alias in node.names
                if (PACKAGE.parent / f"{name}.{alias.name}".replace(".", "/")).with_suffix(".py").exists()
                or (PACKAGE.parent / f"{name}.{alias.name}".replace(".", "/")).is_dir()
            }
    return {name for name in found if name == "hadr_portal" or name.startswith("hadr_portal.")}


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        graph[_module_name(path)] = _imports(path)
    return graph


GRAPH = _graph()


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _known(module: str) -> str | None:
    """The module itself if it is one, else the module that defines the imported name."""
    while module and module not in GRAPH:
        module = module.rpartition(".")[0]
    return module or None


def _arrows() -> list[tuple[str, str]]:
    return sorted(
        {
            (source, target)
            for source, targets in GRAPH.items()
            for name in targets
            if (target := _known(name)) and target != source
        }
    )


def test_every_area_has_a_layer() -> None:
    areas = {_area(module) for module in GRAPH}
    assert areas - set(LAYERS) - WIRING == set()


def test_imports_point_down() -> None:
    wrong = []
    for source, target in _arrows():
        above, below = _area(source), _area(target)
        if above == below or above in WIRING:
            continue
        if below in WIRING:
            wrong.append(f"{source} imports the wiring module {target}")
        elif LAYERS[below] >= LAYERS[above]:
            wrong.append(f"{source} ({above}, layer {LAYERS[above]}) imports {target} ({below}, layer {LAYERS[below]})")
    assert wrong == []


def test_adapters_use_no_django() -> None:
    wrong = []
    for path in sorted((PACKAGE / "adapters").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            wrong += [
                f"{path.relative_to(ROOT)} imports {name}"
                for name in names
                if name.split(".")[0] in ("django", "celery")
            ]
    assert wrong == []


def test_nothing_imports_a_tasks_module() -> None:
    """Work is queued by task name (core.dispatch), so a service never depends on the Celery entry points."""
    wrong = [
        f"{source} imports {target}"
        for source, target in _arrows()
        if target.endswith(".tasks") and source != "hadr_portal.celery"
    ]
    assert wrong == []


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for source, target in _arrows():
        edges[source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_no_circles() -> None:
    assert _cycles() == []


@pytest.mark.parametrize("layer", ["adapters", "core"])
def test_lower_layers_import_no_app(layer: str) -> None:
    apps = {name for name, rank in LAYERS.items() if rank >= LAYERS["accounts"]}
    wrong = [f"{s} imports {t}" for s, t in _arrows() if _area(s) == layer and _area(t) in apps]
    assert wrong == []
