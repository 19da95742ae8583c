"""The order the xdist workers take the test files in (``mem_testing/durations.py``): longest
first from the record, a file's tests together and in their order; the record written from the
phases of a run keeps the files that were not run."""

from __future__ import annotations

import json
from pathlib import Path

from mem_testing.durations import longest_first, read_durations, record_durations

IDS = ["t/a.py::x", "t/a.py::y", "t/b.py::x", "t/c.py::x[1]", "t/c.py::x[2]", "t/c.py::z", "t/d.py::x"]


def test_files_go_longest_first_and_keep_their_tests_in_order() -> None:
    order = longest_first(IDS, {"t/a.py": 3.0, "t/b.py": 50.0, "t/d.py": 3.0})
    # b 50 s; c unknown: 3 tests at 1 s = 3 s, ties keep the collection order (a, c, d)
    assert [IDS[i] for i in order] == [
        "t/b.py::x",
        "t/a.py::x",
        "t/a.py::y",
        "t/c.py::x[1]",
        "t/c.py::x[2]",
        "t/c.py::z",
        "t/d.py::x",
    ]
    assert longest_first(IDS, {}) == [3, 4, 5, 0, 1, 2, 6]  # nothing recorded: by number of tests


def test_the_record_sums_the_phases_per_file_and_keeps_the_files_not_run(tmp_path: Path) -> None:
    path = tmp_path / "durations.json"
    assert read_durations(path) == {}
    path.write_text(json.dumps({"t/a.py": 9.0, "t/old.py": 4.0}))
    record_durations(path, [("t/a.py::x", 1.0), ("t/a.py::x", 0.25), ("t/a.py::y", 1.0), ("t/b.py::x", 7.0)])
    assert json.loads(path.read_text()) == {"t/b.py": 7.0, "t/old.py": 4.0, "t/a.py": 2.2}
    assert list(read_durations(path)) == ["t/b.py", "t/old.py", "t/a.py"]  # longest first
