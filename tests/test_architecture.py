"""The import graph of our packages, read from the source with ``ast`` (every import: module level,
inside functions, under ``TYPE_CHECKING``), against the layering of README.md:

    mem_memory  <-  mem_core  <-  mem_serving  <-  mem_pipelines  <-  mem_cli

No cycle between modules, between the subpackages of a package or between packages; no package
imports one above it; ``mem_pipelines`` uses only the public face of ``mem_serving``; the
generated stubs ``mem_serving._gen`` are imported nowhere else (tests and benchmarks included).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Bottom first; each package may import only the ones before it.
LAYERS = ("mem_memory", "mem_core", "mem_serving", "mem_pipelines", "mem_cli")
#: What code above ``mem_serving`` may import from it: the client and the wire types.
SERVING_PUBLIC = frozenset({"mem_serving.client", "mem_serving.api"})
GENERATED = "mem_serving._gen"

#: Import edges (importer, imported) known to close a cycle, each in a file another engineer is
#: changing on another branch; the letter names the owner. Delete an entry once its edge is gone:
#: the test fails on any cycle not made only of these edges, and on an entry that no longer exists.
KNOWN_CYCLE_EDGES: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    target: str  # the name as written, resolved to an absolute dotted name
    path: Path
    line: int
    nested: bool  # inside a function


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[Import]:
    return _imports_in(path.read_text(), path, _module_name(path), path.name == "__init__.py")


def _imports_in(source: str, path: Path, module: str, is_package: bool) -> Iterator[Import]:
    package = module if is_package else module.rpartition(".")[0]

    def walk(node: ast.AST, nested: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, path, child.lineno, nested)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in child.names:
                    # ``from a import b`` imports module a.b when there is one, else a name of a
                    yield Import(
                        module, f"{base}.{alias.name}" if alias.name != "*" else base, path, child.lineno, nested
                    )
            yield from walk(child, inner)

    yield from walk(ast.parse(source, str(path)), False)


def _files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


@cache
def _modules() -> frozenset[str]:
    return frozenset(_module_name(p) for p in _files(*LAYERS))


def _resolve(name: str) -> str | None:
    """The module of ours that importing ``name`` runs (the longest existing prefix), else None."""
    known = _modules()
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def _graph() -> tuple[dict[str, set[str]], tuple[Import, ...]]:
    edges: dict[str, set[str]] = {m: set() for m in _modules()}
    found = []
    for path in _files(*LAYERS):
        for imp in _imports(path):
            target = _resolve(imp.target)
            if target is not None and target != imp.importer:
                edges[imp.importer].add(target)
                found.append(Import(imp.importer, target, imp.path, imp.line, imp.nested))
    return edges, tuple(found)


def _cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _collapse(edges: Mapping[str, Iterable[str]], depth: int) -> dict[str, set[str]]:
    """The graph between dotted-name prefixes of ``depth`` parts (packages, subpackages)."""
    out: dict[str, set[str]] = {}
    for a, targets in edges.items():
        ka = ".".join(a.split(".")[:depth])
        out.setdefault(ka, set())
        for b in targets:
            kb = ".".join(b.split(".")[:depth])
            if kb != ka:
                out[ka].add(kb)
    return out


def _without_known(edges: Mapping[str, set[str]]) -> dict[str, set[str]]:
    return {a: {b for b in targets if (a, b) not in KNOWN_CYCLE_EDGES} for a, targets in edges.items()}


def _where(importer: str, target: str) -> list[str]:
    return list(
        dict.fromkeys(
            f"{i.path.relative_to(ROOT)}:{i.line}" for i in _graph()[1] if i.importer == importer and i.target == target
        )
    )


def _layer(module: str) -> str:
    return module.split(".")[0]


# --------------------------------------------------------------------------- the walker itself
def test_the_walker_sees_nested_relative_and_from_imports() -> None:
    source = (
        "import os\nfrom . import sibling\nfrom ..core import thing as t\n"
        "def f():\n    from mem_core.settings import project_paths\n"
        "class C:\n    def m(self):\n        import mem_memory.rules.combine\n"
    )
    found = [(i.target, i.nested) for i in _imports_in(source, Path("probe.py"), "mem_pipelines.replay.probe", False)]
    assert found == [
        ("os", False),
        ("mem_pipelines.replay.sibling", False),
        ("mem_pipelines.core.thing", False),
        ("mem_core.settings.project_paths", True),
        ("mem_memory.rules.combine", True),
    ]
    assert _resolve("mem_core.settings.project_paths") == "mem_core.settings"
    assert _resolve("mem_memory.rules.combine.combine") == "mem_memory.rules.combine"
    assert _resolve("numpy") is None
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_covers_every_package() -> None:
    edges, imports = _graph()
    assert {_layer(m) for m in edges} == set(LAYERS)
    assert any(i.nested for i in imports), "function-level imports must be in the graph too"


# --------------------------------------------------------------------------- the rules
def test_no_import_cycle_between_modules_subpackages_or_packages() -> None:
    edges = _without_known(_graph()[0])
    problems = []
    for depth, what in ((None, "modules"), (2, "subpackages"), (1, "packages")):
        graph = edges if depth is None else _collapse(edges, depth)
        for component in _cycles(graph):
            inside = (
                sorted(
                    f"{a} -> {b} ({', '.join(_where(a, b)) or 'via submodules'})"
                    for a in component
                    for b in edges.get(a, ())
                    if b in component
                )
                if depth is None
                else [f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in component]
            )
            problems.append(f"cycle between {what} {component}:\n    " + "\n    ".join(inside))
    assert not problems, "\n".join(problems)


def test_known_cycle_edges_still_exist() -> None:
    edges = _graph()[0]
    stale = [edge for edge in KNOWN_CYCLE_EDGES if edge[1] not in edges.get(edge[0], ())]
    assert not stale, f"remove these entries from KNOWN_CYCLE_EDGES, the imports are gone: {stale}"


def test_each_package_imports_only_the_layers_below_it() -> None:
    wrong = []
    for imp in _graph()[1]:
        a, b = _layer(imp.importer), _layer(imp.target)
        if LAYERS.index(b) > LAYERS.index(a):
            wrong.append(f"{imp.path.relative_to(ROOT)}:{imp.line}: {a} imports {imp.target}")
    assert not wrong, "\n".join(wrong)


def test_mem_memory_imports_no_other_package_of_ours() -> None:
    wrong = [
        f"{i.path.relative_to(ROOT)}:{i.line}: {i.target}"
        for i in _graph()[1]
        if _layer(i.importer) == "mem_memory" and _layer(i.target) != "mem_memory"
    ]
    assert not wrong, "\n".join(wrong)


def test_pipelines_and_cli_reach_serving_through_its_public_modules_only() -> None:
    """``mem_cli`` may also run the server (``mem serve``); nothing above serving reaches into its
    internals otherwise."""
    runs_the_server = {"mem_serving.server", "mem_serving.settings", "mem_serving.credentials"}
    allowed = {"mem_pipelines": SERVING_PUBLIC, "mem_cli": SERVING_PUBLIC | runs_the_server}
    wrong = [
        f"{i.path.relative_to(ROOT)}:{i.line}: {i.target}"
        for i in _graph()[1]
        if _layer(i.importer) in allowed
        and _layer(i.target) == "mem_serving"
        and i.target not in allowed[_layer(i.importer)]
    ]
    assert not wrong, "\n".join(wrong)


def test_generated_stubs_are_private_to_mem_serving() -> None:
    """Tests and benchmarks included: they use ``mem_serving.api`` / ``mem_serving.client``."""
    wrong = []
    for path in _files(*LAYERS, "tests", "bench"):
        if path.is_relative_to(ROOT / "mem_serving"):
            continue
        for imp in _imports(path):
            if imp.target == GENERATED or imp.target.startswith(GENERATED + "."):
                wrong.append(f"{path.relative_to(ROOT)}:{imp.line}: {imp.target}")
    assert not wrong, "\n".join(wrong)


# --------------------------------------------------------------------------- tests, benches, harness
HARNESS = "mem_testing"


def _local_names(folder: str) -> set[str]:
    """What a script with ``folder`` on ``sys.path`` may import from it: its modules and packages."""
    base = ROOT / folder
    return {p.stem for p in base.glob("*.py")} | {p.name for p in base.iterdir() if (p / "__init__.py").exists()}


def _reaching(folder: str, into: str) -> list[str]:
    """Imports in ``folder`` of the modules of ``into`` (as ``into.x`` or, with ``into`` put on
    ``sys.path``, as ``x``), and any ``sys.path`` entry naming ``into``."""
    names = (_local_names(into) - _local_names(folder) - {"conftest", "__init__"}) | {into}
    wrong = []
    for path in _files(folder):
        wrong += [
            f"{path.relative_to(ROOT)}:{i.line}: {i.target}" for i in _imports(path) if i.target.split(".")[0] in names
        ]
        wrong += [
            f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if "sys.path" in line and f'"{into}"' in line
        ]
    return wrong


def test_tests_and_benches_do_not_import_each_other() -> None:
    """What both need lives in ``mem_testing`` (the harness)."""
    wrong = _reaching("tests", "bench") + _reaching("bench", "tests")
    assert not wrong, "\n".join(wrong)


def test_the_packages_do_not_import_the_test_harness() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{i.line}: {i.target}"
        for path in _files(*LAYERS)
        for i in _imports(path)
        if i.target.split(".")[0] == HARNESS
    ]
    assert not wrong, "\n".join(wrong)


def test_the_harness_check_sees_imports_both_ways() -> None:
    source = "import bench_serving\nfrom bench.serve_process import stop\nimport tests.pg_cluster\n"
    targets = [i.target.split(".")[0] for i in _imports_in(source, Path("probe.py"), "probe", False)]
    assert [t in _local_names("bench") | {"bench"} for t in targets] == [True, True, False]
    assert "serving" in _local_names("tests") and "bench_serving" in _local_names("bench")
