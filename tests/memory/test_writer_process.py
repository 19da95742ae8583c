"""The writer process (mem_memory.writer) behind ``MemoryEngine.enhance_async``: real child
processes on real SQLite files, killed with SIGKILL where the test says so."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mem_memory import KEY_ENV, DuplicateDecision, MemoryEngine, MemoryStore, MemoryUnavailable, Outcome
from mem_memory.async_commit import AsyncDecisionCommitter
from mem_memory.requests import Conflict, Replay
from mem_memory.writer import KICK_EVERY, WriterProcess

from .helpers import T0, b64, kill_after_lines, request

pytestmark = pytest.mark.sqlite_only  # SQLite's files: the writer process, caps, backups, modes

WORKER = Path(__file__).with_name("_worker.py")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_dead(pid: int, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _enhance_many(engine: MemoryEngine, n: int, callers: int = 8, symbol: str = "BTCUSDT"):
    async def caller(k: int) -> list:
        out = []
        for i in range(n // callers):
            out.append(await engine.enhance_async(request(symbol=symbol, price=100.0 + k * 1000 + i)))
        return out

    async def main() -> list:
        return [d for part in await asyncio.gather(*(caller(k) for k in range(callers))) for d in part]

    return asyncio.run(main())


def test_decisions_through_the_writer_are_durable_indexed_and_encrypted(db: Path, key: bytes, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, b64(key))
    store = MemoryStore.open(db, key=key)
    engine = MemoryEngine(store, writer_process=True)
    engine.start_writer()
    writer_pid = engine._async.writer.pid  # type: ignore[union-attr]
    environ = Path(f"/proc/{writer_pid}/environ").read_bytes()
    assert KEY_ENV.encode() not in environ and b64(key).encode() not in environ  # the child never holds the key
    decisions = _enhance_many(engine, 400)
    stats = engine.group_stats
    assert stats["units"] == 400 and stats["commits"] < 400  # batched: fewer commits than decisions
    assert len(engine.recent_decisions("BTCUSDT", 50)) == 50  # the index saw them without a refresh
    engine.close()
    assert _wait_dead(writer_pid)
    store.close()

    reopened = MemoryStore.open(db, key=key)
    try:
        assert reopened.counts()["decisions"] == 400
        for d in decisions[::37]:
            assert reopened.get_decision(d.decision_id)[0] == d
        ids = [e.event_id for e in reopened.events_since(0, limit=10_000)]
        assert ids == list(range(1, 401))
    finally:
        reopened.close()
    raw = db.read_bytes() + Path(f"{db}-wal").read_bytes() if Path(f"{db}-wal").exists() else db.read_bytes()
    assert b"momentum" not in raw  # payloads were encrypted by the parent before the child wrote them


def test_outcomes_in_process_and_decisions_through_the_writer_keep_one_consistent_index(db: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store, writer_process=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for round_ in range(20):
            batch = await asyncio.gather(
                *(engine.enhance_async(request(price=100.0 + round_ * 10 + i)) for i in range(6))
            )
            # outcomes go through the in-process group commit on worker threads, interleaved with decisions
            outcomes = [
                loop.run_in_executor(
                    None,
                    engine.record_outcome,
                    Outcome(d.decision_id, d.price, d.price * 1.01, 1.0, 1.0, 0.01, "tp", T0),
                )
                for d in batch[:3]
            ]
            more = [engine.enhance_async(request(price=200.0 + round_)) for _ in range(3)]
            await asyncio.gather(*outcomes, *more)

    asyncio.run(main())
    live = [(v.decision.decision_id, v.outcome is not None) for v in engine.recent_decisions("BTCUSDT", 50)]
    engine.close()
    fresh = MemoryEngine(store)  # built from the log alone
    assert [(v.decision.decision_id, v.outcome is not None) for v in fresh.recent_decisions("BTCUSDT", 50)] == live
    assert store.counts() == {"decisions": 180, "outcomes": 60, "shadow_outcomes": 0}
    store.close()


def test_a_repeated_decision_id_fails_only_its_own_caller(db: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store, writer_process=True)
    committer: AsyncDecisionCommitter = engine._async  # type: ignore[assignment]
    first = engine._prepare([request()], [""])[0][1]
    others = [p for _, p in engine._prepare([request(price=101.0 + i) for i in range(5)], [""] * 5)]

    async def main() -> list:
        await committer.submit_many([first], [None])
        return await committer.submit_many([*others[:2], first, *others[2:]], [None] * 6)

    results = asyncio.run(main())
    assert isinstance(results[2], DuplicateDecision)
    assert all(isinstance(r, int) for i, r in enumerate(results) if i != 2)
    assert store.counts()["decisions"] == 6
    engine.close()
    store.close()


def test_a_cancelled_caller_leaves_the_others_of_its_batch_answered_and_its_decisions_stored(db: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store, writer_process=True)
    committer: AsyncDecisionCommitter = engine._async  # type: ignore[assignment]
    made = [p for _, p in engine._prepare([request(price=100.0 + i) for i in range(30)], [""] * 30)]

    async def main() -> tuple[list, list]:
        first = asyncio.ensure_future(committer.submit_many(made[:10], [None] * 10))
        await asyncio.sleep(0)  # sent: in flight
        gone = asyncio.ensure_future(committer.submit_many(made[10:20], [None] * 10))
        kept = asyncio.ensure_future(committer.submit_many(made[20:], [None] * 10))
        await asyncio.sleep(0)  # both queued behind the first: one batch
        gone.cancel()
        answered = await kept
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await first, answered

    first, answered = asyncio.run(main())
    assert all(isinstance(r, int) for r in first + answered), (first, answered)
    assert answered == sorted(answered) and len(set(answered)) == 10
    engine.close()
    assert len(store.decision_event_ids([p.decision_id for p in made])) == 30  # the cancelled ones too
    store.close()


def test_a_killed_writer_loses_no_acknowledged_decision_and_is_replaced(db: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store, writer_process=True)
    engine.start_writer()
    first_pid = engine._async.writer.pid  # type: ignore[union-attr]
    acked: list[str] = []
    failed: list[BaseException] = []
    lookups: list[threading.Thread] = []  # where the in-doubt batch was looked up
    lookup = store.decision_event_ids

    def recorded(ids: list[str]) -> dict[str, int]:
        lookups.append(threading.current_thread())
        return lookup(ids)

    store.decision_event_ids = recorded  # type: ignore[method-assign]

    async def caller(k: int) -> None:
        for i in range(150):
            try:
                d = await engine.enhance_async(request(symbol=f"K{k}", price=100.0 + i))
                acked.append(d.decision_id)
            except MemoryUnavailable as exc:
                failed.append(exc)

    async def killer() -> None:
        while len(acked) < 300:
            await asyncio.sleep(0.001)
        os.kill(first_pid, signal.SIGKILL)  # mid-stream, batches in flight

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(killer(), *(caller(k) for k in range(8))), timeout=60)

    asyncio.run(main())
    assert _wait_dead(first_pid)
    new_pid = engine._async.writer.pid  # type: ignore[union-attr]
    assert new_pid != first_pid and _alive(new_pid)  # a new writer took over
    assert engine._async.writer.starts == 2  # type: ignore[union-attr]
    # in-doubt decisions are looked up, the rest resent once: nobody sees the crash
    assert failed == [] and len(acked) == 1200
    assert lookups and threading.main_thread() not in lookups  # not on the event loop's thread
    engine.close()
    stored = store.decision_event_ids(acked)
    assert len(stored) == len(acked)
    assert store.counts()["decisions"] == 1200
    assert store.integrity_check() == "ok"
    store.close()


def test_sigkill_of_the_parent_loses_no_acknowledged_decision_and_leaves_no_writer(db: Path, key: bytes) -> None:
    MemoryStore.open(db, key=key).close()
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "write-async", str(db), "CRASH", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, KEY_ENV: b64(key)},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("PID "), proc.stderr.read() if proc.poll() is not None else first  # type: ignore[union-attr]
    writer_pid = int(first.split()[1])
    lines, err = kill_after_lines(proc, 500)
    assert proc.returncode == -signal.SIGKILL, err
    acked = {line.split()[1] for line in lines if line.startswith("D ")}
    assert len(acked) >= 500, err
    assert _wait_dead(writer_pid), "the writer outlived its parent"
    store = MemoryStore.open(db, key=key)
    try:
        assert store.integrity_check() == "ok"
        assert len(store.decision_event_ids(sorted(acked))) == len(acked)
        ids = [e.event_id for e in store.events_since(0, limit=1_000_000)]
        assert ids == list(range(1, len(ids) + 1))
    finally:
        store.close()


def _decisions_in_the_database_file(db: Path, tmp: Path) -> int:
    """Decisions in ``db``'s main file alone: those a checkpoint has copied out of the WAL."""
    copy = tmp / "main-file-only.db"
    copy.write_bytes(db.read_bytes())
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])
    finally:
        conn.close()


def test_the_writer_copies_the_wal_into_the_database_file_between_commits(db: Path, tmp_path: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store, writer_process=True)
    _enhance_many(engine, 16)  # far below the 1,000 pages at which a COMMIT would checkpoint
    held = 0
    deadline = time.monotonic() + 10
    while held < 16 and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            held = _decisions_in_the_database_file(db, tmp_path)
        except sqlite3.DatabaseError:  # copied mid-checkpoint: look again
            continue
    assert held == 16, "the background checkpoint did not copy the committed decisions"
    engine.close()
    store.close()


def test_big_batches_leave_a_short_wal_copied_beside_the_commits(db: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store, writer_process=True)
    committer: AsyncDecisionCommitter = engine._async  # type: ignore[assignment]
    wal = Path(f"{db}-wal")

    async def main() -> list[int]:
        sizes = []
        for k in range(6):  # ~700 WAL pages each: past SQLite's default 1,000 in two
            made = engine._prepare([request(symbol=f"S{i}", price=100.0 + k) for i in range(1000)], [""] * 1000)
            results = await committer.submit_many([p for _, p in made], [None] * 1000)
            assert all(isinstance(r, int) for r in results)
            await asyncio.sleep(0.3)  # the checkpoint thread copies the batch meanwhile
            sizes.append(wal.stat().st_size)
        return sizes

    sizes = asyncio.run(main())
    engine.close()
    assert store.counts()["decisions"] == 6000
    store.close()
    # the commits never checkpoint (wal_autocheckpoint is 8,192 pages in the writer), the thread
    # does: each commit restarts the copied WAL, which stays one batch long
    assert max(sizes) < 2 * min(sizes), sizes


def _wal_restarts(db: Path) -> int:
    """The WAL header's checkpoint sequence number: one more at every restart of the WAL."""
    return int.from_bytes(Path(f"{db}-wal").read_bytes()[12:16], "big")


def test_a_stream_of_single_commits_keeps_restarting_the_wal(db: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store, writer_process=True)
    engine.start_writer()

    async def main() -> int:
        before = None
        for n in range(1, 6 * KICK_EVERY + 1):  # the writer's n-th commit
            await engine.enhance_async(request(price=100.0 + n))
            before = _wal_restarts(db) if before is None else before
            # a sequential client's round trip; after a kick, time for the copy on a loaded machine
            await asyncio.sleep(0.02 if n % KICK_EVERY == 0 else 0.001)
        assert before is not None
        return _wal_restarts(db) - before

    restarts = asyncio.run(main())
    engine.close()
    assert store.counts()["decisions"] == 6 * KICK_EVERY
    store.close()
    # every KICK_EVERY-th commit has the WAL copied in the pause after it, so the next one can
    # restart the WAL (5 chances here): its commits then overwrite the file rather than grow it.
    # Measured on 2 loaded cores: 4-6 restarts; 0-2 with the 0.1 s tick alone
    assert restarts >= 3, restarts


def test_close_stops_the_writer_and_later_calls_fail_clearly(db: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store, writer_process=True)
    _enhance_many(engine, 16)
    pid = engine._async.writer.pid  # type: ignore[union-attr]
    engine.close()
    assert _wait_dead(pid)
    with pytest.raises(MemoryUnavailable, match="closed"):
        asyncio.run(engine.enhance_async(request()))
    assert store.counts()["decisions"] == 16
    store.close()


def test_a_writer_that_cannot_open_the_store_is_a_clear_error(tmp_path: Path) -> None:
    not_a_store = tmp_path / "plain.db"
    not_a_store.write_bytes(b"")
    with pytest.raises(MemoryUnavailable, match="could not open|failed to start"):
        WriterProcess(not_a_store).start()


def test_close_after_the_event_loop_is_gone_settles_the_batch_in_flight(db: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store, writer_process=True)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer's commit waits: the batch stays in flight
    loop = asyncio.new_event_loop()
    tasks = [loop.create_task(engine.enhance_async(request(price=100.0 + i))) for i in range(5)]
    loop.run_until_complete(asyncio.sleep(0))  # every task starts: a batch is sent, the rest queue
    inflight = len(engine._async._inflight)  # type: ignore[union-attr]
    # how many ride the first batch, and whether a queued one is sent before the cancellation
    # lands, depends on how soon the writer answers (a loaded machine: more per batch)
    assert inflight >= 1
    pid = engine._async.writer.pid  # type: ignore[union-attr]
    for t in tasks:
        t.cancel()  # as a stopping server cancels its calls; then its loop closes
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    blocker.execute("ROLLBACK")
    blocker.close()
    engine.close()  # from another loop-less thread: must neither raise nor leave the writer behind
    assert _wait_dead(pid)
    stored = store.counts()["decisions"]
    assert inflight <= stored <= 5  # the batch in flight committed: settled, not lost
    assert len(engine.recent_decisions("BTCUSDT", 50)) == stored  # and the index has exactly those
    store.close()


def test_enhance_async_without_the_writer_process_commits_in_process(db: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store)  # writer_process=False: the group commit on a worker thread
    decisions = _enhance_many(engine, 40)
    assert engine._async is None
    assert store.counts()["decisions"] == 40
    assert {v.decision.decision_id for v in engine.recent_decisions("BTCUSDT", 50)} == {
        d.decision_id for d in decisions
    }
    engine.close()  # a no-op here
    store.close()


# ---------------------------------------------------------------------- a batch sent in parts


def _rows(db: Path) -> dict[str, list[tuple]]:
    """Everything the decisions of a store wrote (the requests' times aside)."""
    conn = sqlite3.connect(db)
    try:
        return {
            "events": conn.execute("SELECT event_id, kind, subject, payload FROM events ORDER BY event_id").fetchall(),
            "decisions": conn.execute("SELECT * FROM decisions ORDER BY decision_id").fetchall(),
            "requests": conn.execute("SELECT kind, tag, event_id, reply FROM requests ORDER BY tag").fetchall(),
        }
    finally:
        conn.close()


def _commit_through_the_writer(
    db: Path, key: bytes, part: int, calls: list[list], in_parts: bool
) -> tuple[list[list], list[bool]]:
    """Each of ``calls`` (prepared decisions) committed through a writer process on ``db``, the
    last one by ``submit_made`` (``in_parts``) or ``submit_many``: the answers, and ``more`` of
    every send to the child."""
    store = MemoryStore.open(db, key=key)
    engine = MemoryEngine(store, writer_process=True)
    committer: AsyncDecisionCommitter = engine._async  # type: ignore[assignment]
    committer.part = part
    sends: list[bool] = []
    send = committer.writer.send

    def spy(prepared, max_pages=None, *, more=False):
        sends.append(more)
        send(prepared, max_pages, more=more)

    committer.writer.send = spy  # type: ignore[method-assign]

    async def main() -> list[list]:
        answers = [await committer.submit_many(c, [None] * len(c)) for c in calls[:-1]]
        last = calls[-1]
        if in_parts:
            answers.append(await committer.submit_made(len(last), lambda i, j: (last[i:j], [None] * (j - i))))
        else:
            answers.append(await committer.submit_many(last, [None] * len(last)))
        return answers

    try:
        return asyncio.run(main()), sends
    finally:
        engine.close()
        store.close()


@pytest.mark.parametrize("part", [7, 100])  # parts through the pipe itself, and through the file
def test_a_batch_sent_in_parts_stores_and_answers_what_one_send_does(tmp_path: Path, key: bytes, part: int) -> None:
    n = 3 * part + part // 2  # four parts, the last a half
    ids = [f"req-{i}" for i in range(n)]
    fps = ["same"] * n
    ids[part + 1] = ids[1]  # repeated in a later part: the first one's event (Replay)
    ids[2 * part + 2] = ids[2]
    fps[2 * part + 2] = "other"  # and with another fingerprint: Conflict
    ids[4] = ids[3]  # repeated within a part
    fps[6] = ""  # an id without a fingerprint, then with one in a later part: Conflict, as in one send
    ids[2 * part + 4] = ids[6]
    ids[3 * part + 1] = "stored-before"  # recorded by an earlier call: its stored answer
    maker = MemoryStore.open(tmp_path / "maker.db", key=key)  # the same records for both stores
    engine = MemoryEngine(maker)
    earlier = [p for _, p in engine._prepare([replace(request(symbol="E"), request_id="stored-before")], ["same"])]
    reqs = [replace(request(symbol=f"P{i:03d}", price=100.0 + i), request_id=ids[i]) for i in range(n)]
    batch = [p for _, p in engine._prepare(reqs, fps)]
    maker.close()

    (_, parts), sent_parts = _commit_through_the_writer(tmp_path / "a.db", key, part, [earlier, batch], True)
    (_, one), sent_one = _commit_through_the_writer(tmp_path / "b.db", key, part, [earlier, batch], False)
    assert sent_parts == [False, True, True, True, False]  # the earlier call, then four parts
    assert sent_one == [False, False]
    assert parts == one
    assert parts[part + 1] == Replay(parts[1], batch[1].payload)
    assert parts[2 * part + 2] == Conflict(parts[2])
    assert parts[4] == Replay(parts[3], batch[3].payload)
    assert parts[2 * part + 4] == Conflict(parts[6])
    assert parts[3 * part + 1] == Replay(1, earlier[0].payload)
    assert sum(isinstance(r, int) for r in parts) == n - 5
    stored = _rows(tmp_path / "a.db")
    assert stored == _rows(tmp_path / "b.db") and len(stored["events"]) == n - 4


def test_a_writer_killed_between_parts_commits_nothing_of_the_batch_and_the_batch_is_answered(db: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store, writer_process=True)
    committer: AsyncDecisionCommitter = engine._async  # type: ignore[assignment]
    committer.part = 50
    engine.start_writer()
    first_pid = committer.writer.pid
    assert first_pid is not None
    reqs = [replace(request(symbol=f"K{i:03d}", price=100.0 + i), request_id=f"close-{i}") for i in range(200)]
    fps = [f"fp-{i}" for i in range(200)]
    made = engine._made
    parts: list[list[str]] = []
    seen_after_kill: list[dict[str, int]] = []

    def make_then_kill(*args):
        decisions, prepared = made(*args)
        parts.append([d.decision_id for d in decisions])
        if len(parts) == 2:  # the child has the first part (inserted, uncommitted): kill it
            time.sleep(0.3)
            assert store.decision_event_ids(parts[0]) == {}
            os.kill(first_pid, signal.SIGKILL)
            assert _wait_dead(first_pid)
            seen_after_kill.append(store.decision_event_ids(parts[0]))
        return decisions, prepared

    engine._made = make_then_kill  # type: ignore[method-assign]
    lookup = store.decision_event_ids
    in_doubt: list[dict[str, int]] = []

    def looked_up(ids: list[str]) -> dict[str, int]:
        found = lookup(ids)
        if len(ids) == 200:
            in_doubt.append(found)
        return found

    store.decision_event_ids = looked_up  # type: ignore[method-assign]

    async def main() -> tuple[list, list]:
        answers = await engine.enhance_many(reqs, fps)
        return answers, await engine.enhance_many(reqs, fps)  # the caller retries: the stored answers

    answers, again = asyncio.run(main())
    assert len(parts) == 8  # made and sent in four parts, and the retry's four
    assert seen_after_kill == [{}] and in_doubt == [{}]  # rolled back with the child, then looked up: none
    assert all(not isinstance(a, Exception) and not a.replayed for a in answers), answers
    assert committer.writer.starts == 2  # resent whole to a new child
    assert store.counts()["decisions"] == 200
    assert [a.decision for a in again if not isinstance(a, Exception) and a.replayed] == [a.decision for a in answers]
    assert store.counts()["decisions"] == 200
    engine.close()
    store.close()


def test_a_batch_whose_making_fails_between_parts_stores_nothing_and_the_next_commits(db: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store, writer_process=True)
    committer: AsyncDecisionCommitter = engine._async  # type: ignore[assignment]
    committer.part = 20
    prepared = [p for _, p in engine._prepare([request(symbol=f"F{i}") for i in range(100)], [""] * 100)]

    def make(i: int, j: int):
        if i >= 60:
            raise ValueError("no decision for you")
        return prepared[i:j], [None] * (j - i)

    async def main() -> list:
        with pytest.raises(ValueError, match="no decision"):
            await committer.submit_made(100, make)
        return await committer.submit_many(prepared[60:], [None] * 40)  # once the child rolled back

    results = asyncio.run(main())
    assert all(isinstance(r, int) for r in results)
    assert store.counts()["decisions"] == 40
    assert store.decision_event_ids([p.decision_id for p in prepared[:60]]) == {}
    engine.close()
    store.close()


def test_a_call_of_one_part_or_less_is_one_send(db: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store, writer_process=True)
    committer: AsyncDecisionCommitter = engine._async  # type: ignore[assignment]
    committer.part = 10
    engine.start_writer()
    sends: list[tuple[int, bool]] = []
    send = committer.writer.send

    def spy(prepared, max_pages=None, *, more=False):
        sends.append((len(prepared), more))
        send(prepared, max_pages, more=more)

    committer.writer.send = spy  # type: ignore[method-assign]

    async def main() -> None:
        await engine.enhance_async(request())
        await engine.enhance_many([request(symbol=f"S{i}") for i in range(10)])
        await engine.enhance_many([request(symbol=f"S{i}") for i in range(25)])

    asyncio.run(main())
    assert sends == [(1, False), (10, False), (10, True), (10, True), (5, False)]
    assert store.counts()["decisions"] == 36
    engine.close()
    store.close()
