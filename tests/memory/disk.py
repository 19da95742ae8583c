"""A real full disk for tests: a small tmpfs mounted by the test (root only) and a filler file
that takes every free byte; ``free()`` gives the space back. Elsewhere the tests that need it are
skipped with the reason, never under CI=true (there they fail). Imported by tests; not collected."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


class SmallDisk:
    """A tmpfs of ``size`` bytes at ``path``."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.filler = path / "filler"

    def fill(self) -> None:
        """Take every free byte (what a runaway log or a full volume does)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 4096, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)
        assert self.free_bytes() == 0, self.free_bytes()

    def free(self) -> None:
        """Give the space back."""
        self.filler.unlink(missing_ok=True)

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize


@contextmanager
def small_disk(path: Path, size: int = 16 << 20) -> Iterator[SmallDisk]:
    """Mount a tmpfs of ``size`` bytes at ``path`` (created), unmount it afterwards."""
    reason = None
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        reason = "mounting a small tmpfs needs root"
    else:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            reason = f"cannot mount a tmpfs: {done.stderr.strip()}"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (a full disk is tested for real in CI)")
        pytest.skip(reason)
    try:
        yield SmallDisk(path, size)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
