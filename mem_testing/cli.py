"""The ``mem`` command run in this process (typer's ``CliRunner``) when a child process would test
nothing more: its help, its refusals of bad options. The answer has the shape of
``subprocess.run``'s, and an exception the command did not turn into an exit (what a user would
see as a traceback) is raised, not hidden."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from typer.testing import CliRunner


def run_mem(*args: str, env: Mapping[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
    """``mem <args>`` in process: its exit code, stdout and stderr (``env``: variables set for the
    call, ``None`` removes one)."""
    from mem_cli.main import app

    result = CliRunner().invoke(app, list(args), env=dict(env) if env else None, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"mem {' '.join(args)} raised (a traceback for the user)") from result.exception
    return subprocess.CompletedProcess(["mem", *args], result.exit_code, result.stdout, result.stderr)
