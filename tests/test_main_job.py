"""The README's main job, shortened: a fresh MEM_HOME, free ports, the whole story in a subprocess.

It must produce the three-way report, stop everything it started, and say where to look.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mem_core.questdb.local import free_port

ROOT = Path(__file__).resolve().parents[1]


def _our_processes(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


def test_main_job_end_to_end_leaves_report_and_no_processes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "MEM_HOME": str(home),
        "DAGSTER_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "MEM_QUESTDB_HTTP_PORT": str(free_port()),
        "MEM_QUESTDB_PG_PORT": str(free_port()),
    }
    for var in ("MEM_QUESTDB_HOST", "MEM_MEMORY_DB", "MEM_SYMBOLS"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "mem_cli.main", "main", "--days", "16", "--train-days", "10", "--replay-days", "2"],
        cwd=home, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = home / "reports" / "report.md"
    assert report.is_file()
    text = report.read_text()
    for row in ("Base strategy alone", "Base + ML filter", "Base + ML + memory (full system)"):
        assert f"| {row} |" in text
    assert (home / "reports" / "equity.png").stat().st_size > 1000
    assert "holdout accuracy" in proc.stdout and "majority baseline" in proc.stdout
    assert "Dagster UI" in proc.stdout and "MLflow UI" in proc.stdout
    # nothing left running from this MEM_HOME (QuestDB data dir, memory store)
    assert _our_processes(str(home)) == []
