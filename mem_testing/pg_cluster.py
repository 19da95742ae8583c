"""A throwaway PostgreSQL cluster for tests and benchmarks: ``initdb`` + ``pg_ctl`` in a temporary
folder, listening on a free loopback port (and a socket in the same folder), trust auth for the
``postgres`` role, gone after ``stop``.

PostgreSQL refuses to run as root: as root the cluster runs as the ``postgres`` OS user (Debian's
package creates it). Binaries: ``MEM_TEST_PG_BIN`` if set, else the newest
``/usr/lib/postgresql/*/bin``, else ``pg_ctl`` on PATH. ``find_bin`` returns None when there is
none (the caller fails or skips; in CI it fails: see tests/conftest.py).

``fsync=off``: the tests kill clients, never the server, so the server's own crash safety is not
what they check, and a database per test is much faster without it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg


def find_bin() -> Path | None:
    named = os.environ.get("MEM_TEST_PG_BIN")
    if named:
        return Path(named) if (Path(named) / "pg_ctl").exists() else None
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    bin: Path
    root: Path
    port: int
    user: str | None  # the OS user running the server (None: this process's)
    _dbs: list[str] = field(default_factory=list)
    _opts: str = ""  # the server's options (pg_ctl -o)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kw: dict[str, object] = {}
        if self.user is not None:
            kw["user"] = self.user
        return subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=True, cwd=self.root, **kw
        )  # type: ignore[call-overload]

    @classmethod
    def start(cls, bin_dir: Path | None = None, *, durable: bool = False) -> PgCluster:
        """Start a cluster; ``durable`` keeps PostgreSQL's defaults (fsync, full-page writes) as a
        real deployment has them (benchmarks), else they are off (tests)."""
        bin_dir = bin_dir or find_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; scripts/bootstrap.sh does it)")
        user = "postgres" if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="mem-pg-", dir="/tmp"))
        if user is not None:
            pw = pwd.getpwnam(user)
            os.chown(root, pw.pw_uid, pw.pw_gid)
        cluster = cls(bin_dir, root, _free_port(), user)
        try:
            cluster._run(
                bin_dir / "initdb", "-D", cluster.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
            )
            opts = f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=128MB"
            if not durable:
                opts += " -c fsync=off -c full_page_writes=off"
            cluster._opts = opts
            cluster.resume()
        except BaseException as exc:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else ""
            raise RuntimeError(f"could not start PostgreSQL from {bin_dir}: {exc} {detail} {log[-2000:]}") from None
        return cluster

    def pause(self) -> None:
        """Stop the server (as a crash does: no shutdown checkpoint), keeping its data."""
        self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", timeout=60)

    def resume(self) -> None:
        """Start the server on its data and port (again, after ``pause``)."""
        self._run(
            self.bin / "pg_ctl", "-D", self.data, "-o", self._opts, "-l", self.root / "log", "-w", "-t", "60", "start"
        )

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url(), autocommit=True)

    def create_db(self, prefix: str = "t") -> str:
        """A new empty database; its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self._dbs.append(name)
        return self.url(name)

    def drop_db(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        try:
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        for _ in range(50):
            if not (self.data / "postmaster.pid").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)
