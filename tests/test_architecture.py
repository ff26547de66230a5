"""The layers of docs/architecture.md hold: each package imports only those the table allows, and nothing cycles.

Every import statement of every module under powerbank/ is read with ``ast``: at module level, inside
functions, under ``if TYPE_CHECKING:``. A module's layer is its first package under powerbank/.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "powerbank"

# Layer → the layers it may import (besides its own modules and the leaf modules).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "routes": frozenset({"web", "services", "dispatch", "rules", "models"}),
    "web": frozenset({"rules", "models", "db"}),
    "ocpp": frozenset({"services", "rules", "models", "db"}),
    "dispatch": frozenset({"services", "ocpp", "rules", "models", "db"}),
    "services": frozenset({"rules", "models", "db"}),
    "rules": frozenset({"models"}),
    "models": frozenset({"db"}),
    "db": frozenset(),
    # The leaf modules: every layer may import them, and they import no PowerBank module.
    "errors": frozenset(),
    "config": frozenset(),
    "tasks": frozenset(),
    "i18n": frozenset(),
}
LEAVES = frozenset({"errors", "config", "tasks", "i18n"})
# The app factory (powerbank/__init__.py: create_app), the command line, serving and the tools put
# the layers together: they may import anything, and only they may import runtime or tools.
ANYTHING = frozenset({"powerbank", "cli", "runtime", "tools"})


@dataclass(frozen=True)
class Import:
    """One PowerBank module imported by one statement."""

    line: int
    target: str
    statement: str


def module_name(path: Path) -> str:
    """Return the dotted name of a module file under powerbank/."""
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


MODULES = all_modules()


def layer_of(module: str) -> str:
    """Return a module's layer: its first package under powerbank/ (``powerbank`` for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _is_package(module: str, modules: Mapping[str, Path]) -> bool:
    path = modules.get(module)
    return path is not None and path.name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom, modules: Mapping[str, Path]) -> str:
    """Return the module a ``from ... import`` statement names, relative ones resolved."""
    if node.level == 0:
        return node.module or ""
    package = module if _is_package(module, modules) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _is_powerbank(name: str) -> bool:
    return name == "powerbank" or name.startswith("powerbank.")


def imports_of(module: str, source: str, modules: Mapping[str, Path] = MODULES) -> Iterator[Import]:
    """Yield every PowerBank module that ``source``, read as ``module``, imports, wherever the statement is."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_powerbank(alias.name):
                    yield Import(node.lineno, alias.name, ast.unparse(node))
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node, modules)
            if not _is_powerbank(base):
                continue
            for alias in node.names:
                # `from powerbank.services import enrollment` imports a module; `from powerbank.models
                # import ChargePoint` imports a name of the package.
                submodule = f"{base}.{alias.name}"
                yield Import(node.lineno, submodule if submodule in modules else base, ast.unparse(node))


def broken_rule(module: str, imported: str) -> str | None:
    """Return why ``module`` may not import ``imported``, or None when the table allows it."""
    source, target = layer_of(module), layer_of(imported)
    if source in ANYTHING or (source == target and source not in LEAVES):
        return None
    if source not in MAY_IMPORT:
        return f"the layer {source} has no row in MAY_IMPORT: say what it may import"
    if target in LEAVES and source not in LEAVES:
        return None
    if target in MAY_IMPORT[source]:
        return None
    if source in LEAVES:
        return f"{source} is a leaf module: it imports no PowerBank module"
    allowed = ", ".join(sorted(MAY_IMPORT[source])) or "nothing above it"
    return f"{source} may import {allowed} (and the leaf modules {', '.join(sorted(LEAVES))}), not {target}"


def violations(module: str, source: str, modules: Mapping[str, Path] = MODULES) -> list[str]:
    """Return one line per import of ``source`` (read as ``module``) that the table forbids."""
    found = []
    for imported in imports_of(module, source, modules):
        rule = broken_rule(module, imported.target)
        if rule is not None:
            path = modules.get(module, Path(module.replace(".", "/") + ".py"))
            where = path.relative_to(PACKAGE_DIR.parent) if path.is_absolute() else path
            found.append(f"{where}:{imported.line}: `{imported.statement}` imports {imported.target}: {rule}")
    return found


def import_graph(modules: Mapping[str, Path]) -> dict[str, dict[str, Import]]:
    """Return module → the PowerBank modules it imports (each with its first import statement)."""
    graph: dict[str, dict[str, Import]] = {}
    for module, path in modules.items():
        edges: dict[str, Import] = {}
        for imported in imports_of(module, path.read_text(encoding="utf-8"), modules):
            if imported.target in modules and imported.target != module:
                edges.setdefault(imported.target, imported)
        graph[module] = edges
    return graph


def cycles(graph: Mapping[str, Mapping[str, object]]) -> list[list[str]]:
    """Return one cycle (modules, the first repeated at the end) per group of modules that import in a circle."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = lowlink[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, {}):
            if successor not in index:
                visit(successor)
                lowlink[node] = min(lowlink[node], lowlink[successor])
            elif successor in on_stack:
                lowlink[node] = min(lowlink[node], index[successor])
        if lowlink[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_shortest_cycle(graph, group) for group in groups]


def _shortest_cycle(graph: Mapping[str, Mapping[str, object]], group: set[str]) -> list[str]:
    """Return the shortest circle through the first module of a group (breadth first, inside the group)."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    for node in queue:
        for successor in sorted(graph.get(node, {})):
            if successor == start:
                return [*paths[node], start]
            if successor in group and successor not in paths:
                paths[successor] = [*paths[node], successor]
                queue.append(successor)
    raise AssertionError(f"no cycle through {start}")  # A strongly connected group always has one.


# The layer rule, module by module -------------------------------------------------------------


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_only_what_its_layer_may(module: str) -> None:
    found = violations(module, MODULES[module].read_text(encoding="utf-8"))
    assert not found, "\n".join(found)


def test_no_import_cycles_among_powerbank_modules() -> None:
    graph = import_graph(MODULES)
    found = []
    for cycle in cycles(graph):
        steps = [
            f"  {MODULES[a].relative_to(PACKAGE_DIR.parent)}:{graph[a][b].line}: `{graph[a][b].statement}`"
            for a, b in zip(cycle, cycle[1:], strict=False)
        ]
        found.append(" → ".join(cycle) + "\n" + "\n".join(steps))
    assert not found, "import cycles:\n" + "\n".join(found)


def test_every_layer_has_a_row_in_the_table() -> None:
    layers = {layer_of(module) for module in MODULES}
    assert layers - MAY_IMPORT.keys() - ANYTHING == set()


# The checker itself -----------------------------------------------------------------------------


def test_a_route_reaching_into_ocpp_state_is_reported() -> None:
    found = violations("powerbank.routes.activations", "from powerbank.ocpp.registry import Registry\n")
    assert found == [
        "powerbank/routes/activations.py:1: `from powerbank.ocpp.registry import Registry` imports "
        "powerbank.ocpp.registry: routes may import dispatch, models, rules, services, web "
        "(and the leaf modules config, errors, i18n, tasks), not ocpp"
    ]


def test_imports_in_functions_under_type_checking_and_relative_ones_are_read() -> None:
    source = """
from typing import TYPE_CHECKING

from powerbank.errors import NotFound
from powerbank.services import enrollment

if TYPE_CHECKING:
    from ..ocpp.registry import Registry


def serve() -> None:
    import powerbank.runtime.server
"""
    found = violations("powerbank.routes.teams", source)
    assert [line.split(":")[1] for line in found] == ["8", "12"]
    assert "imports powerbank.ocpp.registry" in found[0]
    assert "imports powerbank.runtime.server" in found[1]


@pytest.mark.parametrize(
    ("module", "statement", "allowed"),
    [
        ("powerbank.services.enrollment", "from powerbank.rules import countries", True),
        ("powerbank.services.enrollment", "from powerbank.web.auth import principal", False),
        ("powerbank.services.enrollment", "from powerbank.ocpp.registry import Registry", False),
        ("powerbank.models.enrollment", "from powerbank.services import enrollment", False),
        ("powerbank.models.enrollment", "from powerbank.db import UTCDateTime", True),
        ("powerbank.db", "from powerbank.models import ChargePoint", False),
        ("powerbank.errors", "from powerbank.config import Settings", False),
        ("powerbank.rules.permissions", "from powerbank.errors import Forbidden", True),
        ("powerbank.dispatch.runner", "from powerbank.ocpp.registry import Registry", True),
        ("powerbank.ocpp.endpoint", "from powerbank.dispatch import runner", False),
        ("powerbank.web.render", "from powerbank.tools.simulator import SimulatedCharger", False),
        ("powerbank.runtime.server", "from powerbank.tools.simulator import SimulatedCharger", True),
        ("powerbank.routes.home", "from powerbank import create_app", False),
        ("powerbank", "from powerbank.routes import enrollment", True),
    ],
)
def test_the_table_decides(module: str, statement: str, allowed: bool) -> None:
    assert (violations(module, statement) == []) is allowed


def test_a_cycle_is_found_and_shown_as_the_circle_it_is() -> None:
    graph: dict[str, dict[str, object]] = {
        "a": {"b": None},
        "b": {"c": None, "d": None},
        "c": {"a": None},
        "d": {},
        "e": {"e": None},
    }
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b": None}, "b": {}}) == []


def test_a_cycle_through_an_import_inside_a_function_counts(tmp_path: Path) -> None:
    catalogue, enrollment = tmp_path / "catalogue.py", tmp_path / "enrollment.py"
    catalogue.write_text("def edit() -> None:\n    from powerbank.services.enrollment import reevaluate\n")
    enrollment.write_text("from powerbank.services.catalogue import catalogue_keys\n")
    modules = {"powerbank.services.catalogue": catalogue, "powerbank.services.enrollment": enrollment}
    assert cycles(import_graph(modules)) == [
        ["powerbank.services.catalogue", "powerbank.services.enrollment", "powerbank.services.catalogue"]
    ]
