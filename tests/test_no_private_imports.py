"""Our code uses only the public API of third-party packages: no import of a private module or
name (``scipy.signal._sigtools``), no attribute reach into one (``np._core``), except the few in
``KNOWN_PRIVATE``, each with the reason no public API serves and the test that pins it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = {"mem_core", "mem_memory", "mem_pipelines", "mem_serving", "mem_cli"}
#: Private names a file of ours uses knowingly. The test fails on any other private reach and on
#: an entry no longer used.
KNOWN_PRIVATE: dict[str, list[str]] = {
    # Dagster gives a run its code location's origin only when a loaded workspace launches it; no
    # public API executes a run in this process with that origin, which the UI needs to re-execute
    # it (dagster-io/dagster#19458). Pinned by tests/test_webserver.py (re-execution through GraphQL).
    "mem_cli/location_runs.py": [
        "dagster._core.definitions.job_base.InMemoryJob",
        "dagster._core.execution.api.execute_run",
        "dagster._core.remote_origin.RemoteJobOrigin",
        "dagster._core.remote_origin.RemoteRepositoryOrigin",
        "dagster._core.workspace.load.location_origins_from_yaml_paths",
    ],
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reaches(source: str) -> list[str]:
    """Private third-party modules, names and attributes used in ``source``."""
    tree = ast.parse(source)
    found: list[str] = []
    third_party: set[str] = set()  # local names bound to third-party modules or objects
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in OURS:
                    continue
                if any(_private(part) for part in alias.name.split(".")):
                    found.append(alias.name)
                third_party.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in OURS or node.module == "__future__":
                continue
            for alias in node.names:
                if any(_private(part) for part in node.module.split(".")) or _private(alias.name):
                    found.append(f"{node.module}.{alias.name}")
                third_party.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in third_party:
                found.append(f"{ast.unparse(node)}")
    return found


def test_the_check_sees_private_reaches() -> None:
    assert private_reaches("from scipy.signal._sigtools import _linear_filter") == [
        "scipy.signal._sigtools._linear_filter"
    ]
    assert private_reaches("import scipy.signal\nf = scipy.signal._sigtools._linear_filter") == [
        "scipy.signal._sigtools._linear_filter",
        "scipy.signal._sigtools",
    ]
    assert private_reaches("from numpy import _core") == ["numpy._core"]
    assert (
        private_reaches(
            "from mem_serving._gen.mem.v1 import mem_pb2\nimport numpy as np\nx = np.zeros(3).__len__()\nself._x = 1"
        )
        == []
    )


def test_no_package_of_ours_reaches_into_a_private_third_party_api() -> None:
    files = [p for pkg in sorted(OURS) for p in (ROOT / pkg).rglob("*.py") if "_gen" not in p.parts]
    assert len(files) > 50
    found = {str(p.relative_to(ROOT)): hits for p in files if (hits := private_reaches(p.read_text(encoding="utf-8")))}
    assert found == KNOWN_PRIVATE
