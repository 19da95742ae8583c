"""Progress of an in-process Dagster run on the console, and third-party logs kept quiet.

``follow_run`` follows a run's step events in the instance's event log from a background
thread: a line when a step starts and ends, and a "still running" line every ``every`` seconds
while a long step (the fit) runs, so a user never watches a silent terminal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

#: Libraries whose INFO lines (database migrations, run links, instance notes) interleave the
#: main job's own steps; shown again with ``--verbose``.
THIRD_PARTY_LOGGERS = ("mlflow", "alembic", "dagster", "urllib3", "git", "py4j")


def quiet_third_party(verbose: bool) -> None:
    """WARNING and above from the third-party loggers, unless ``verbose``. (MLflow's two registry
    notes are ``print`` calls, not log records: ``mem_core.registry`` silences them itself.)"""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return
    import mlflow  # noqa: F401  (mlflow sets its logger's level when imported: quiet it afterwards)

    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class follow_run:
    """Print the steps of run ``run_id`` as they start and finish, from a background thread,
    until ``stop()`` or until the run has finished."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        run_id: str,
        say: Callable[[str], None],
        every: float = 10.0,
        poll: float = 0.5,
    ) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_follow, args=(instance, run_id, say, every, poll, self._stop), name="run-progress", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _follow(
    instance: dg.DagsterInstance,
    run_id: str,
    say: Callable[[str], None],
    every: float,
    poll: float,
    stop: threading.Event,
) -> None:
    from dagster import DagsterEventType

    kinds = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
    cursor: str | None = None
    running: dict[str, float] = {}
    last_line = time.monotonic()
    while True:
        stopping = stop.wait(poll)  # once stopped, one last read prints the steps not shown yet
        try:
            run = instance.get_run_by_id(run_id)  # read before the events: a finished run's are all there
            if run is None:
                if stopping:
                    return
                continue
            conn = instance.get_records_for_run(run_id, cursor=cursor, of_type=kinds)
        except Exception:  # progress is a courtesy: a busy storage only delays the next line
            if stopping:
                return
            continue
        cursor = conn.cursor
        now = time.monotonic()
        for record in conn.records:
            entry = record.event_log_entry
            event = entry.dagster_event
            if event is None or event.step_key is None:
                continue
            step = event.step_key
            if event.event_type == DagsterEventType.STEP_START:
                running[step] = entry.timestamp
                say(f"  {step} ...")
            else:
                began = running.pop(step, entry.timestamp)
                verdict = "done" if event.event_type == DagsterEventType.STEP_SUCCESS else "FAILED"
                say(f"  {step} {verdict} ({entry.timestamp - began:.1f}s)")
            last_line = now
        if stopping or run.is_finished:
            return
        if running and now - last_line >= every:
            wall = time.time()
            say("  " + ", ".join(f"{s} still running ({wall - t:.0f}s)" for s, t in running.items()))
            last_line = now
