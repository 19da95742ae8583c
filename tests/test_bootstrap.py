"""CI must fail loudly, never skip, when Java or the QuestDB server cannot be had."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bootstrap_without_java_fails_with_a_clear_message():
    env = {**os.environ, "MEM_JAVA": "/nonexistent/java", "CI": "true"}
    env.pop("MEM_QUESTDB_HOST", None)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "bootstrap.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0
    assert "Java >= 17 is required" in proc.stderr


def test_tests_needing_questdb_error_not_skip_when_the_server_cannot_start(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text("def test_needs_db(questdb):\n    assert questdb.pg_port > 0\n")
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    env = {**os.environ, "MEM_QUESTDB_JAR": str(tmp_path / "missing.jar"), "CI": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(probe)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "1 error" in proc.stdout
    assert "skipped" not in proc.stdout
    assert "QuestDB jar not found" in proc.stdout
