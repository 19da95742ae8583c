"""Shared fixtures: a real QuestDB on free loopback ports for the whole session.

There is no skip: a missing Java or QuestDB jar fails the run loudly (CI must not go green
without the database).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mem_core.settings import QuestDBSettings
from mem_testing.durations import longest_first, read_durations, record_durations
from mem_testing.questdb import drop_candles, local_questdb

ROOT = Path(__file__).resolve().parents[1]


def _shared_candles() -> Path:
    """Where the shared real candles are: ``MEM_SHARED_DATA`` (a ``data`` folder) when set, else
    ``../shared/data`` beside this checkout, else beside the local repository this one was cloned
    from (a CI-style clone into another folder, e.g. ``git clone . /tmp/ci-check``)."""
    if os.environ.get("MEM_SHARED_DATA"):
        return Path(os.environ["MEM_SHARED_DATA"]) / "candles"
    beside = ROOT.parent / "shared" / "data" / "candles"
    if beside.is_dir():
        return beside
    try:
        origin = subprocess.run(
            ["git", "-C", str(ROOT), "remote", "get-url", "origin"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and "://" not in origin and Path(origin).is_dir():
        cloned_from = Path(origin).resolve().parent / "shared" / "data" / "candles"
        if cloned_from.is_dir():
            return cloned_from
    return beside


SHARED_CANDLES = _shared_candles()

#: The slow tier, by node id prefix (a file, or one test in it), with why: ``pytest -m "not slow"``
#: (``bash scripts/test.sh --fast``) leaves these out; the README's command and CI run them all.
#: A test may also say ``@pytest.mark.slow`` itself.
SLOW = {
    "tests/test_main_job.py": "the whole main job in a subprocess",
    "tests/test_webserver.py": "dagster-webserver started and polled",
    "tests/test_dagster_postgres.py": "a Dagster instance on PostgreSQL",
    "tests/test_fresh_candles_e2e.py": "serve, QuestDB and the next training",
    "tests/test_bootstrap.py": "bootstrap and a bare pytest session in subprocesses",
    "tests/ingest/test_cli.py": "mem questdb start, ingest and stop as processes on a QuestDB of their own",
    "tests/memory/test_durability.py": "a 60 s soak of writer processes, and processes killed mid-write",
    "tests/memory/test_rekey.py": "key rotations with a process killed in the middle",
    "tests/memory/test_backup.py": "online backups while a process writes, restore drills",
    "tests/training/test_pipeline_e2e.py": "train_and_gate on 33 days of two symbols",
    "tests/replay/test_replay_e2e.py": "replays through the real server",
    "tests/replay/test_planted_edge.py": "a twelve-day replay of four symbols",
    "tests/serving/test_fuzz_scale.py": "1,500 generated requests",
    "tests/serving/test_replicas.py": "two servers and two mem serve processes on PostgreSQL",
    "tests/serving/test_credential_rotation.py": "rotations under a calling thread, mem serve processes",
    "tests/serving/test_startup_errors.py": "mem serve, mem questdb start and mem main as processes that must fail",
    "tests/serving/test_serve_process.py": "mem serve as a process, stopped and killed",
    "tests/serving/test_second_estimator.py": "a second estimator family trained and served",
    "tests/serving/test_regime_hist_gb.py": "the regime_v1 hist_gb champion trained and served",
    "tests/serving/test_memory_store_ops.py": "mem serve processes on a full disk and holding a store",
    "tests/serving/test_cli_interrupt.py": "mem serve processes interrupted with Ctrl-C",
    "tests/serving/test_kill_during_batches.py": "a mem serve process killed during batches",
    "tests/serving/test_ops_metrics.py": "mem serve processes scraped over HTTP",
    "tests/serving/test_model_cache.py::test_mem_serve_downloads_the_champion_once_and_starts_from_the_cache_after": (
        "mem serve started twice as a process"
    ),
    "tests/test_definitions.py::test_job_snapshots_do_not_depend_on_the_hash_seed": (
        "the definitions loaded in subprocesses under several hash seeds"
    ),
}
#: End-to-end tests (the product through its entry points: the main job, the UI, ``mem serve`` or
#: a replay against a real server): ``pytest -m e2e`` runs only them.
E2E = (
    "tests/test_main_job.py",
    "tests/test_webserver.py",
    "tests/ingest/test_cli.py",
    "tests/test_fresh_candles_e2e.py",
    "tests/training/test_pipeline_e2e.py",
    "tests/replay/test_replay_e2e.py",
    "tests/replay/test_planted_edge.py",
    "tests/serving/test_serve_process.py",
    "tests/serving/test_full_cycle.py",
)


def _listed(nodeid: str, prefixes: Iterable[str]) -> bool:
    return any(nodeid == p or nodeid.startswith(p + "::") for p in prefixes)


#: Seconds per test file on two xdist workers (``mem_testing/durations.py``): each worker collects
#: the files longest first, so ``--dist loadfile --no-loadscope-reorder`` (scripts/test.sh) starts
#: the long ones first. Refresh: ``MEM_TEST_DURATIONS=write bash scripts/test.sh``.
DURATIONS = Path(__file__).with_name("durations.json")
_phases: list[tuple[str, float]] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tiers listed above (``slow``, ``e2e``) on the collected tests; on an xdist worker,
    order the files longest first (``DURATIONS``)."""
    for item in items:
        if _listed(item.nodeid, SLOW):
            item.add_marker(pytest.mark.slow)
        if _listed(item.nodeid, E2E):
            item.add_marker(pytest.mark.e2e)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        order = longest_first([item.nodeid for item in items], read_durations(DURATIONS))
        items[:] = [items[i] for i in order]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if os.environ.get("MEM_TEST_DURATIONS") == "write":
        _phases.append((report.nodeid, report.duration))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """With ``MEM_TEST_DURATIONS=write``, the controller records the seconds of each file run
    (files not run keep theirs)."""
    if os.environ.get("MEM_TEST_DURATIONS") == "write" and not hasattr(session.config, "workerinput"):
        record_durations(DURATIONS, _phases)


@pytest.fixture(scope="session")
def questdb(tmp_path_factory: pytest.TempPathFactory) -> QuestDBSettings:
    """A running QuestDB server started for this test session; stopped at the end."""
    server = local_questdb(tmp_path_factory.mktemp("questdb"))
    settings = server.start()
    yield settings
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster for this session (``mem_testing/pg_cluster.py``): the memory's
    PostgreSQL store and the serving replicas run on it. Missing PostgreSQL fails the run in CI
    (``CI`` set) and skips the PostgreSQL cases elsewhere, saying how to install it."""
    # imported here: this conftest is also copied alone into a bare folder (tests/test_bootstrap.py)
    from mem_testing.pg_cluster import PgCluster, find_bin

    if find_bin() is None:
        msg = "PostgreSQL is not installed: run scripts/bootstrap.sh (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    cluster = PgCluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def fresh_questdb(questdb: QuestDBSettings) -> QuestDBSettings:
    """The session QuestDB with the candles table dropped, so a test starts from nothing."""
    drop_candles(questdb)
    return questdb


@pytest.fixture(scope="session")
def shared_candles() -> Path:
    """The shared real candles (see ``_shared_candles``); required in CI, skipped only on a
    developer machine without them."""
    if not SHARED_CANDLES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared candles missing at {SHARED_CANDLES}")
        pytest.skip("shared candles not present")
    return SHARED_CANDLES


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store whose tables were made once for the session (MLflow's
    migrations take seconds on every new database; a copy of this one takes milliseconds)."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()  # creates the tables
    return db


@pytest.fixture(scope="session")
def new_mlflow_store(mlflow_template: Path) -> Callable[[Path], str]:
    """``new_mlflow_store(db)``: a new, empty MLflow SQLite store at ``db`` (a copy of the session's
    template; its artifacts go to ``mlruns/`` beside it, as for any new store); its URI."""

    def make(db: Path) -> str:
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(mlflow_template, db)
        return f"sqlite:///{db}"

    return make
