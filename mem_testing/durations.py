"""Test files ordered longest first for ``pytest-xdist --dist loadfile``: the workers take files
in collection order, so the long files start first and the short ones fill the end (longest
processing time first); the seconds per file are recorded in ``tests/durations.json``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

#: Seconds a test of a file not in the record is counted for.
UNKNOWN_TEST_SECONDS = 1.0


def file_of(nodeid: str) -> str:
    """The file part of a node id (``tests/a.py::test_x[1]`` -> ``tests/a.py``)."""
    return nodeid.split("::", 1)[0]


def read_durations(path: Path) -> dict[str, float]:
    """The recorded seconds per test file; empty when there is no record."""
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        return {}


def longest_first(nodeids: Sequence[str], seconds: Mapping[str, float]) -> list[int]:
    """The indexes of ``nodeids`` with whole files longest first (a file not in ``seconds``
    counts ``UNKNOWN_TEST_SECONDS`` a test); a file's tests, and files of equal time, keep
    their order."""
    files: dict[str, list[int]] = {}
    for i, nodeid in enumerate(nodeids):
        files.setdefault(file_of(nodeid), []).append(i)

    def cost(item: tuple[str, list[int]]) -> float:
        name, indexes = item
        return seconds.get(name, UNKNOWN_TEST_SECONDS * len(indexes))

    ordered = sorted(files.items(), key=cost, reverse=True)  # sorted() is stable
    return [i for _, indexes in ordered for i in indexes]


def per_file(phases: Iterable[tuple[str, float]], before: Mapping[str, float]) -> dict[str, float]:
    """Seconds per test file from (node id, seconds) of every phase run (setup, call, teardown),
    rounded to 0.1 s; the files of ``before`` not run keep theirs; longest first."""
    total: dict[str, float] = {}
    for nodeid, duration in phases:
        name = file_of(nodeid)
        total[name] = total.get(name, 0.0) + duration
    merged = {**before, **{k: round(v, 1) for k, v in total.items()}}
    return dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])))


def record_durations(path: Path, phases: Iterable[tuple[str, float]]) -> None:
    """Write ``per_file`` of ``phases`` over the record at ``path``."""
    path.write_text(json.dumps(per_file(phases, read_durations(path)), indent=1) + "\n")
