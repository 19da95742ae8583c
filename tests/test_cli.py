"""The `mem` command and scripts/ui.sh as a user runs them (nothing mocked): ``python -m mem_cli.main``
as a subprocess where the process matters (the entry point, a busy port), else in process (help,
refused options: ``mem_testing.cli``)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from mem_testing.cli import run_mem

ROOT = Path(__file__).resolve().parents[1]


def _mem(*args: str) -> subprocess.CompletedProcess:
    return run_mem(*args)


def test_version_prints_the_package_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mem_cli.main", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"mem {version}"


def test_main_help_states_the_sample_default_and_the_synthetic_option() -> None:
    out = _mem("main", "--help").stdout
    for needle in ("--synthetic", "shipped sample", "--verbose", "BTCUSDT,ETHUSDT"):
        assert needle in out, needle


def test_main_refuses_csv_and_synthetic_together_in_one_line(tmp_path: Path) -> None:
    proc = _mem("main", "--synthetic", "--csv", str(tmp_path / "x.csv"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: give --csv or --synthetic, not both"


def test_synthetic_days_are_checked_only_with_synthetic() -> None:
    proc = _mem("main", "--synthetic", "--days", "10")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "--days (10)" in proc.stderr


def test_default_symbols_agree_across_commands() -> None:
    synthetic = _mem("ingest", "synthetic", "--help").stdout
    main = _mem("main", "--help").stdout
    replay = _mem("replay", "--help").stdout
    for out in (synthetic, main, replay):
        assert "BTCUSDT,ETHUSDT" in out and "BNBUSDT" not in out


def test_serve_help_states_the_true_registry_default() -> None:
    out = " ".join(_mem("serve", "--help").stdout.replace("│", " ").split())
    assert "sqlite:///$MEM_HOME/mlflow.db" in out
    assert "sqlite:///mlflow.db" not in out


def _ui(tmp_path: Path, which: str, **env: str) -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MEM_HOME", "DAGSTER_HOME", "MLFLOW_TRACKING_URI", "MEM_MEMORY_DB", "PORT", "MEM_MLFLOW_UI_URL")
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ui.sh"), "--dry-run", which],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    out = dict(line.split("=", 1) for line in lines[:-1])
    out["command"] = lines[-1]
    return out


def test_ui_sh_uses_the_stores_of_mem_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dagster = _ui(tmp_path, "dagster", MEM_HOME=str(home))
    assert dagster["DAGSTER_HOME"] == str(home)
    # the store `mem main` and `mem serve` write (mem_core.settings.memory_db_path)
    assert dagster["MEM_MEMORY_DB"] == str(home / ".mem" / "memory" / "memory.db")
    named = _ui(tmp_path, "dagster", MEM_HOME=str(home), MEM_MEMORY_DB="mine.db")  # relative: the caller's
    assert named["MEM_MEMORY_DB"] == str(tmp_path / "mine.db")
    assert dagster["command"].endswith("dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000")
    mlflow = _ui(tmp_path, "mlflow", MEM_HOME="home")  # relative: from the caller's directory, as `mem` reads it
    assert mlflow["MLFLOW_TRACKING_URI"] == f"sqlite:///{home}/mlflow.db"
    assert f"--backend-store-uri sqlite:///{home}/mlflow.db --default-artifact-root {home}/mlruns" in mlflow["command"]


def test_ui_sh_mlflow_one_worker_on_the_port_the_links_follow(tmp_path: Path) -> None:
    got = _ui(tmp_path, "mlflow", MEM_HOME=str(tmp_path))
    assert got["command"].endswith("-h 127.0.0.1 -p 5000 --workers 1")
    assert "env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false " in got["command"]  # no job-runner processes
    assert _ui(tmp_path, "mlflow", MEM_HOME=str(tmp_path), PORT="5055")["command"].endswith("-p 5055 --workers 1")
    named = _ui(tmp_path, "mlflow", MEM_HOME=str(tmp_path), MEM_MLFLOW_UI_URL="http://127.0.0.1:6001")
    assert named["command"].endswith("-p 6001 --workers 1")


def test_ui_sh_honours_dagster_home_and_mlflow_tracking_uri(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "runs.db"
    got = _ui(
        tmp_path,
        "mlflow",
        MEM_HOME=str(tmp_path / "home"),
        DAGSTER_HOME=str(tmp_path / "dg"),
        MLFLOW_TRACKING_URI=f"sqlite:///{db}",
    )
    assert got["DAGSTER_HOME"] == str(tmp_path / "dg")
    assert f"--backend-store-uri sqlite:///{db} --default-artifact-root {db.parent}/mlruns" in got["command"]
    server = _ui(tmp_path, "mlflow", MLFLOW_TRACKING_URI="http://mlflow.internal:5000")
    assert "--backend-store-uri http://mlflow.internal:5000 " in server["command"]


def test_ui_sh_defaults_to_the_project_folder(tmp_path: Path) -> None:
    got = _ui(tmp_path, "dagster")
    assert got["MEM_HOME"] == got["DAGSTER_HOME"] == str(ROOT)
    assert got["MLFLOW_TRACKING_URI"] == f"sqlite:///{ROOT}/mlflow.db"


def test_main_on_a_busy_questdb_port_is_one_line(tmp_path: Path) -> None:
    import socket

    from mem_core.questdb.local import free_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **{k: v for k, v in os.environ.items() if k != "MEM_QUESTDB_HOST"},
            "MEM_HOME": str(tmp_path),
            "DAGSTER_HOME": str(tmp_path),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "MEM_QUESTDB_HTTP_PORT": str(port),
            "MEM_QUESTDB_PG_PORT": str(free_port()),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "mem_cli.main", "main"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and f"port {port} on 127.0.0.1 is already in use" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
