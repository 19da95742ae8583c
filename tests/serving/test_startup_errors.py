"""Start-up configuration errors, as an operator meets them: `mem serve`, `mem questdb start` and
`mem main` say what is wrong in one line naming the port, file or variable, exit 1, and leave no
traceback and no process behind. The refusals of a setting read before anything starts run in
process (``run_mem``); the ports, the memory store and one refusal of each command stay processes."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mem_memory import MemoryStore
from mem_testing.cli import run_mem

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _mem(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MEM_SERVING", "MEM_MEMORY", "MEM_QUESTDB"))}
    base.update(MEM_HOME=str(tmp_path), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", **env)
    return subprocess.run(
        [sys.executable, "-m", "mem_cli.main", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


def _mem_in_process(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``_mem`` in this process (``mem_testing.cli.run_mem``), for a refusal of a setting the
    command reads before it starts anything (``None`` removes a variable)."""
    unset: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("MEM_SERVING", "MEM_MEMORY", "MEM_QUESTDB"))
    }
    return run_mem(
        *args,
        env=unset | {"MEM_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", **env},
    )


def _one_line_error(done: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_mem_serve_names_the_problem(tmp_path: Path, busy_port: int) -> None:
    serve = ["serve", "--port", "0", "--metrics-port", "-1", "--memory-db", str(tmp_path / "m.db")]
    _one_line_error(
        _mem([*serve, "--port", str(busy_port)], tmp_path),
        f"gRPC port 127.0.0.1:{busy_port} is already in use",
        "MEM_SERVING_PORT",
    )
    _one_line_error(
        _mem([*serve, "--metrics-port", str(busy_port)], tmp_path),
        f"metrics port 127.0.0.1:{busy_port} is already in use",
        "MEM_SERVING_METRICS_PORT",
    )
    missing = tmp_path / "nowhere" / "server.crt"
    _one_line_error(
        _mem_in_process(
            serve, tmp_path, MEM_SERVING_TLS_CERT=str(missing), MEM_SERVING_TLS_KEY=str(tmp_path / "server.key")
        ),
        f"MEM_SERVING_TLS_CERT names {missing}, which cannot be read",
    )
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    _one_line_error(
        _mem_in_process(
            serve,
            tmp_path,
            MEM_SERVING_TLS_CERT=str(tmp_path / "junk.pem"),
            MEM_SERVING_TLS_KEY=str(tmp_path / "junk.pem"),
        ),
        "MEM_SERVING_TLS_CERT",
        "not a PEM certificate",
    )
    _one_line_error(_mem_in_process(serve, tmp_path, MEM_MEMORY_KEY="garbage!"), "MEM_MEMORY_KEY is not valid base64")
    _one_line_error(
        _mem_in_process(serve, tmp_path, MEM_MEMORY_KEY=base64.b64encode(b"short").decode()),
        "MEM_MEMORY_KEY decodes to 5 bytes",
    )
    MemoryStore.open(tmp_path / "m.db", key=os.urandom(32)).close()
    _one_line_error(_mem(serve, tmp_path, MEM_MEMORY_KEY=_key()), "MEM_MEMORY_KEY", f"{tmp_path / 'm.db'}")
    _one_line_error(_mem(serve, tmp_path), "encrypted", "MEM_MEMORY_KEY")
    _one_line_error(
        _mem_in_process(serve, tmp_path, MEM_SERVING_WORKERS="many"),
        "MEM_SERVING_WORKERS must be an integer, got 'many'",
    )
    _one_line_error(
        _mem_in_process(serve, tmp_path, MEM_QUESTDB_PG_PORT="99999"), "MEM_QUESTDB_PG_PORT must be a TCP port"
    )
    (tmp_path / "a-folder.db").mkdir()
    _one_line_error(
        _mem([*serve, "--memory-db", str(tmp_path / "a-folder.db")], tmp_path),
        "cannot open the memory store",
        "MEM_MEMORY_DB",
    )


def test_mem_questdb_start_and_mem_main_name_the_problem(tmp_path: Path) -> None:
    _one_line_error(
        _mem(["questdb", "start"], tmp_path, MEM_QUESTDB_HTTP_PORT="http"),
        "MEM_QUESTDB_HTTP_PORT must be a TCP port (1-65535), got 'http'",
    )
    _one_line_error(
        _mem_in_process(["questdb", "start", "--pg-port", "-3"], tmp_path), "--pg-port -3: must be a TCP port"
    )
    _one_line_error(_mem(["main"], tmp_path, MEM_MEMORY_KEY="garbage!"), "MEM_MEMORY_KEY is not valid base64")
    _one_line_error(_mem_in_process(["main"], tmp_path, MEM_SERVING_PORT="x"), "MEM_SERVING_PORT must be an integer")
    _one_line_error(
        _mem_in_process(["main", "--replay-days", "nan"], tmp_path),
        "--replay-days nan: must be a finite number of days > 0",
    )
    assert not (tmp_path / ".mem" / "questdb" / "questdb.pid").exists()
