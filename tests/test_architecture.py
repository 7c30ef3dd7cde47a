"""The import contract: packages form layers, data flows down through them, and nothing imports
in a circle. Read from the source with `ast`, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("placement", "api", "infra")

# Lowest first. A module may import its own layer and the layers below it, never one above.
# Layers that share a tuple are siblings: neither may import the other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("placement.errors", "placement.jsoncodec", "placement.periodic", "placement.metrics",
     "placement.tuning", "placement.extras"),
    ("placement.model",),
    ("placement.policy",),
    ("placement.signals",),
    ("placement.engine",),
    ("placement.store",),
    ("placement.control",),
    ("infra",),
    ("placement.actuators",),
    ("placement.service",),
    ("placement.simulate", "placement.operator", "api"),
    ("placement.cli",),
)


def modules() -> dict[str, Path]:
    """Every module of the three import packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom, known: set[str]
             ) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = []
    for target in names:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target:
            out.append(target)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (at any depth of the file)."""
    mods = modules()
    known = set(mods)
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[name].update(t for t in _targets(name, path, node, known) if t != name)
    return graph


def layer_of(module: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer):
            return i
    return None


def _entry(module: str) -> str:
    """The contract entry (package or module) that `module` belongs to."""
    return next(p for layer in LAYERS for p in layer if module == p or module.startswith(p + "."))


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports that run up the layers, or across two siblings of one layer (the foundation's
    modules excepted: they are leaves that may use each other)."""
    bad = []
    for source, targets in graph.items():
        for target in sorted(targets):
            ls, lt = layer_of(source), layer_of(target)
            if ls is None or lt is None:
                continue
            across = lt == ls and ls > 0 and _entry(source) != _entry(target)
            if lt > ls or across:
                bad.append(f"{source} -> {target}")
    return bad


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(modules()):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer() -> None:
    """A new package must be placed in the contract before it can be imported."""
    unplaced = [m for m in modules() if m.count(".") and layer_of(m) is None
                and m not in ("placement", "api", "infra")]
    assert unplaced == []


def test_no_import_runs_up_the_layers() -> None:
    assert upward_imports(import_graph()) == []


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_placement_never_imports_api() -> None:
    graph = import_graph()
    assert [f"{s} -> {t}" for s, ts in graph.items() if s.startswith("placement")
            for t in ts if t == "api" or t.startswith("api.")] == []


@pytest.mark.parametrize(("source", "target", "allowed"), [
    ("placement.engine.engine", "placement.model.workload", True),
    ("placement.model.workload", "placement.engine.engine", False),
    ("placement.control.runtime", "placement.actuators.kube", False),
    ("api.app", "placement.service.wiring", True),
    ("placement.simulate.run", "placement.operator", False),
], ids=["down is allowed", "up is refused", "service state may not reach the actuators",
        "the HTTP layer calls the service", "siblings on top stay apart"])
def test_the_contract_reads_direction(source: str, target: str, allowed: bool) -> None:
    assert (upward_imports({source: {target}}) == []) is allowed


# --- The store is a layer: SQL and ORM rows stay inside placement.store ----------------------
SQL_NAMES = frozenset({"select", "update", "insert", "delete", "text"})
# Not converted yet: these still build SQL or hold ORM rows themselves. Each one that moves its
# queries into a placement.store repository comes off this list; nothing new goes on it.
SQL_ALLOWED = frozenset({
    "placement.control.lifecycle",  # its SQL is in store.transitions; it still holds ORM rows
})


def sql_imports(path: Path) -> list[str]:
    """The SQL builders (select, update, insert, delete, text) and the ORM table module that a
    file imports, or reaches as `sqlalchemy.<name>`, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if node.module.split(".")[0] == "sqlalchemy" and names & SQL_NAMES:
                found += [f"{node.module}.{n}" for n in sorted(names & SQL_NAMES)]
            if node.module == "placement.store.tables" or (
                    node.module == "placement.store" and "tables" in names):
                found.append("placement.store.tables")
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name == "placement.store.tables"]
        elif (isinstance(node, ast.Attribute) and node.attr in SQL_NAMES
              and isinstance(node.value, ast.Name) and node.value.id == "sqlalchemy"):
            found.append(f"sqlalchemy.{node.attr}")
    return found


def _sql_allowed(module: str, allowed: frozenset[str] = SQL_ALLOWED) -> bool:
    return any(module == a or (a.endswith(".*") and module.startswith(a[:-1]))
               for a in allowed)


def test_sql_stays_in_the_store() -> None:
    """Routers, the dashboard, the operator, auth and the policy diff call store repositories
    (which return plain values), never select/update/... or the ORM rows themselves."""
    bad = [f"{name}: {', '.join(found)}" for name, path in sorted(modules().items())
           if not (name == "placement.store" or name.startswith("placement.store."))
           and not _sql_allowed(name)
           and (found := sql_imports(path))]
    assert bad == []


def test_the_not_converted_list_only_shrinks() -> None:
    """An entry whose module no longer builds SQL comes off the list, so it cannot creep back."""
    mods = modules()
    stale = [a for a in SQL_ALLOWED if not a.endswith(".*") and not sql_imports(mods[a])]
    assert stale == []


def test_the_sql_check_sees_an_offender(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from sqlalchemy import select\n"
                    "    from placement.store.tables import WorkloadRow\n")
    assert sql_imports(path) == ["sqlalchemy.select", "placement.store.tables"]
    wildcard = frozenset({"placement.actuators.*"})  # an entry can cover a package
    assert _sql_allowed("placement.actuators.jobs.actuator", wildcard)
    assert not _sql_allowed("api.routers.workloads", wildcard)
    assert _sql_allowed("placement.control.lifecycle")
