"""Start, stop and inspect a local QuestDB server (Java >= 17, jar from Maven Central).

The server's data lives under a project folder; its pid and log sit beside the data so
``mem questdb stop`` finds a server started by an earlier command.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

from mem_core.settings import (
    DEFAULT_QUESTDB_HTTP_PORT,
    DEFAULT_QUESTDB_PG_PORT,
    LocalQuestDBSettings,
    QuestDBSettings,
    project_paths,
)


class QuestDBError(RuntimeError):
    """The local QuestDB could not be started, reached or stopped; the message says why."""


def default_jar(env: Mapping[str, str] | None = None) -> Path:
    """The QuestDB jar the environment names (see ``LocalQuestDBSettings``)."""
    return LocalQuestDBSettings.from_env(env).jar


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_query(settings: QuestDBSettings, timeout: float = 2.0) -> bool:
    """True when a ``SELECT 1`` over the PG wire protocol succeeds."""
    try:
        with psycopg.connect(**{**settings.pg_conninfo(), "connect_timeout": max(1, int(timeout))}) as conn:
            conn.execute("SELECT 1").fetchone()
        return True
    except psycopg.Error:
        return False


def _java(name: str) -> str:
    java = shutil.which(name)
    if java is None:
        raise QuestDBError(
            f"Java >= 17 is required to run the local QuestDB, but '{name}' was not found (set MEM_JAVA or PATH)"
        )
    return java


@dataclass
class LocalQuestDB:
    """A QuestDB server process rooted at ``root`` listening on loopback ports."""

    root: Path
    http_port: int = DEFAULT_QUESTDB_HTTP_PORT
    pg_port: int = DEFAULT_QUESTDB_PG_PORT
    jar: Path | None = None
    heap: str = "1g"

    @property
    def pid_file(self) -> Path:
        return self.root / "questdb.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "questdb.log"

    @property
    def settings(self) -> QuestDBSettings:
        return QuestDBSettings(host="127.0.0.1", http_port=self.http_port, pg_port=self.pg_port)

    def pid(self) -> int | None:
        """The pid of our running server, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return None
        except PermissionError:
            return pid
        # A zombie or a recycled pid is not our server.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"io.questdb" not in cmdline:
                self.pid_file.unlink(missing_ok=True)
                return None
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return None
        except FileNotFoundError:
            return None
        return pid

    def configured_ports(self) -> tuple[int, int] | None:
        """(HTTP, PG wire) ports in the ``conf/server.conf`` that ``start`` wrote for the server of
        this folder, or None when there is none (never started) or it names no port."""
        try:
            lines = (self.root / "conf" / "server.conf").read_text().splitlines()
        except OSError:
            return None
        found: dict[str, int] = {}
        for line in lines:
            key, sep, value = line.partition("=")
            if sep and key.strip() in ("http.bind.to", "pg.net.bind.to"):
                port = value.strip().rpartition(":")[2]
                if port.isdigit():
                    found[key.strip()] = int(port)
        if len(found) != 2:
            return None
        return found["http.bind.to"], found["pg.net.bind.to"]

    def status(self) -> dict[str, object]:
        """Whether the server of this folder runs and answers, on the ports it was started with
        (its ``conf/server.conf``), whatever the environment's ports say now (``env_ports`` when
        they differ)."""
        pid = self.pid()
        http_port, pg_port = self.http_port, self.pg_port
        ports = self.configured_ports() if pid is not None else None
        if ports is not None:
            http_port, pg_port = ports
        settings = QuestDBSettings(host="127.0.0.1", http_port=http_port, pg_port=pg_port)
        out: dict[str, object] = {
            "running": pid is not None,
            "pid": pid,
            "queryable": pid is not None and can_query(settings),
            "http_port": http_port,
            "pg_port": pg_port,
            "root": str(self.root),
        }
        if (http_port, pg_port) != (self.http_port, self.pg_port):
            out["env_ports"] = {"http_port": self.http_port, "pg_port": self.pg_port}
        return out

    def _write_config(self) -> None:
        conf = self.root / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "server.conf").write_text(
            "\n".join(
                [
                    f"http.bind.to=127.0.0.1:{self.http_port}",
                    f"pg.net.bind.to=127.0.0.1:{self.pg_port}",
                    "http.min.enabled=false",
                    "line.tcp.enabled=false",
                    "line.udp.enabled=false",
                    "telemetry.enabled=false",
                    "shared.worker.count=2",
                    "",
                ]
            )
        )

    def start(self, timeout: float = 90.0) -> QuestDBSettings:
        """Start the server and wait until it answers queries; idempotent when already up."""
        if self.pid() is not None:
            if can_query(self.settings):
                return self.settings
            raise QuestDBError(
                f"a QuestDB process (pid {self.pid()}) runs from {self.root} but does not answer on port {self.pg_port}"
            )
        for name, port in (("HTTP/ILP", self.http_port), ("PG wire", self.pg_port)):
            if not port_is_free(port):
                raise QuestDBError(
                    f"cannot start QuestDB: {name} port {port} on 127.0.0.1 is already in use; "
                    "choose another with MEM_QUESTDB_HTTP_PORT / MEM_QUESTDB_PG_PORT (or --http-port/--pg-port)"
                )
        local = LocalQuestDBSettings.from_env()
        jar = self.jar or local.jar
        if not jar.is_file():
            raise QuestDBError(
                f"QuestDB jar not found at {jar}; run scripts/bootstrap.sh to fetch org.questdb:questdb with Maven"
            )
        java = _java(local.java)
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_config()
        log = open(self.log_file, "ab")
        proc = subprocess.Popen(
            [
                java,
                f"-Xmx{self.heap}",
                "-XX:+UseParallelGC",
                "-p",
                str(jar),
                "-m",
                "io.questdb/io.questdb.ServerMain",
                "-d",
                str(self.root),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise QuestDBError(f"QuestDB exited with code {proc.returncode} while starting.\n{self.log_tail()}")
            if can_query(self.settings, timeout=1.0):
                return self.settings
            time.sleep(0.25)
        self.stop()
        raise QuestDBError(f"QuestDB did not answer queries within {timeout:.0f}s.\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop our server (SIGTERM, then SIGKILL); returns False when none was running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done == pid:
                    break
            except ChildProcessError:
                pass  # not our child: poll with kill(0)
            if self.pid() is None:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)  # reap our child: a zombie still answers kill(pid, 0)
        except ChildProcessError:
            pass  # started by another process: its parent reaps it
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no QuestDB log yet)"
        return "--- last lines of " + str(self.log_file) + " ---\n" + "\n".join(text[-lines:])


def local_from_env(env: Mapping[str, str] | None = None) -> LocalQuestDB:
    """The project's local QuestDB as the environment configures it."""
    s = QuestDBSettings.from_env(env)
    return LocalQuestDB(
        root=project_paths(env).questdb_root, http_port=s.http_port, pg_port=s.pg_port, jar=default_jar(env)
    )
