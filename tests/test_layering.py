"""The house rules (shared/DESIGN.md "What the house must keep", docs/architecture.md), checked by
reading the code: which room may import which, no import cycles, and a store whose public
surface is exactly its contract.  One allow-list for every package; a new gateway adds its name
to PROTOCOLS and nothing else."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("store", "gateways", "auth", "conf", "formats")

#: protocol gateways: each a package under gateways/ that knows the store only by its contract
PROTOCOLS = ("imap", "pop3", "lmtp", "submission", "managesieve", "dav", "http", "relay", "activesync",
             "autoconfig")
#: the gateways' shared wire code
COMMON = "gateways.common"
#: what the store offers the rest of the project
CONTRACT = ("store.interfaces", "store.records", "store.errors")
#: the one module that builds the store (the composition root of the process)
COMPOSITION_ROOT = "gateways.service"
#: modules that may load a database driver
DRIVERS = {"sqlite3": ("store.engines",), "pymysql": ("store.engines",)}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict:
    """module name -> path, for every module of the project's packages."""
    out = {}
    for top in PROJECT:
        for path in sorted((ROOT / top).rglob("*.py")):
            out[_module_name(path)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    """The project module an imported name refers to (``store.errors`` for ``from store import
    errors``, ``gateways.imap`` for ``gateways.imap.Something``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str, top_level_only: bool = False) -> list:
    """(imported project module, line) of ``module``; relative imports resolved."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] or [base]
        else:
            continue
        for name in names:
            if name.split(".")[0] in DRIVERS:
                out.append((name.split(".")[0], node.lineno))
            elif name.split(".")[0] in PROJECT:
                target = _resolve(name)
                if target and target != module:
                    out.append((target, node.lineno))
    return out


def _room(module: str) -> str:
    """Which room of docs/architecture.md a module lives in."""
    parts = module.split(".")
    if parts[0] != "gateways":
        return parts[0]
    if len(parts) > 1 and parts[1] in PROTOCOLS:
        return f"gateways.{parts[1]}"
    if module == COMMON or module.startswith(COMMON + "."):
        return "common"
    return "process"  # gateways.service, gateways.cli, gateways/__init__


def _allowed(module: str, target: str) -> bool:
    room = _room(module)
    if target in DRIVERS:
        return module in DRIVERS[target]
    top = target.split(".")[0]
    if room == "formats":
        return top == "formats"  # pure: imports nothing else of the project
    if room == "conf":
        return top == "conf"
    if room == "store":
        return top in ("store", "formats")  # never gateways, auth or conf: the process hands it plain values
    if room == "auth":
        return top == "auth" or target in CONTRACT
    if top == "store":
        if target in CONTRACT:
            return True
        # only the composition root builds the store (and the plain settings it takes)
        return module == COMPOSITION_ROOT and target in ("store.sqlstore", "store.settings")
    if top in ("formats", "conf") and room == "process":
        return True
    if top == "formats":
        return True  # the neutral format package: both sides of the contract
    if top == "auth":
        return target == "auth.cred" or room == "process"
    if top == "conf":
        return room == "process"
    # gateways.*
    target_room = _room(target)
    if room == "common":
        return target_room == "common"  # shared wire code knows no protocol and not the process
    if room.startswith("gateways."):
        return target_room in (room, "common")  # never another protocol, never the process
    return True  # the process wires every gateway


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_stay_in_their_rooms(module):
    bad = [f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}"
           for target, line in _imports(module) if not _allowed(module, target)]
    assert not bad, "\n".join(bad)


def _cycles(graph: dict) -> list:
    """The strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_among_the_store_modules():
    """In-function imports count too: a loop hidden in a function is still a loop."""
    graph = {m: {t for t, _ in _imports(m) if t.startswith("store")} for m in MODULES if m.startswith("store")}
    assert _cycles(graph) == []


def test_no_import_cycles_among_rooms_and_the_gateways_root():
    """Between rooms (store, formats, auth, conf, each gateway, the shared wire code, the
    process) and among the modules of the gateways' root and shared wire code."""
    rooms: dict = {}
    root: dict = {}
    for m in MODULES:
        for t, _ in _imports(m):
            if t in DRIVERS:
                continue
            if _room(m) != _room(t):
                rooms.setdefault(_room(m), set()).add(_room(t))
            if _room(m) in ("common", "process") and _room(t) in ("common", "process"):
                root.setdefault(m, set()).add(t)
    assert _cycles(rooms) == []
    assert _cycles(root) == []


@pytest.mark.parametrize("package", sorted({m.split(".")[1] for m in MODULES if m.startswith("gateways.")
                                             and m.count(".") >= 2}))
def test_no_import_cycles_inside_a_gateway(package):
    """A gateway's modules form no loop either (IMAP's handler mixins and the protocol that
    combines them share ``states.py`` instead of importing each other)."""
    prefix = f"gateways.{package}"
    graph = {m: {t for t, _ in _imports(m) if t.startswith(prefix + ".") or t == prefix}
             for m in MODULES if m == prefix or m.startswith(prefix + ".")}
    assert _cycles(graph) == []


def test_in_function_imports_say_why():
    """An import inside a function is there to save start-up time (or to reach the installed
    reactor late); the line says so.  Everywhere: a function-level import that hides an import
    loop is a loop (the cycle tests read them too)."""
    missing = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and "#" not in lines[node.lineno - 1]:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not missing, "in-function imports without a comment: " + ", ".join(sorted(set(missing)))


def test_the_store_surface_is_its_contract():
    """Every public method of the SQL store is declared in store.interfaces.Store (or its
    BlockingDav adapter): a gateway or the CLI that uses the store uses only the contract."""
    from store.interfaces import Store
    from store.sqlstore import SqlStore
    declared = {n for n in dir(Store) if not n.startswith("_")}
    extra = sorted(n for n, v in inspect.getmembers(SqlStore)
                   if not n.startswith("_") and callable(v) and n not in declared
                   and not isinstance(inspect.getattr_static(SqlStore, n), property))
    # settings and the properties over them are state, not operations
    assert extra == [], f"SqlStore methods missing from store.interfaces.Store: {extra}"
