"""Private places on disk for the memory: directories 0700, whatever the umask.

The store's files are 0600 (``mem_memory.store``) and the exports 0600 (``mem_memory.exports``);
the directories that hold them are created 0700 here, so that under a permissive umask (000) no
other user can list, rename or delete them. A directory that already exists is left as it is
(it may be a shared place the operator chose, like /tmp); one that others may write to is
reported in the log.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` and any missing parents with mode 0700 (chmod after ``mkdir``, so the umask
    cannot loosen it); returns it. An existing directory keeps its mode."""
    p = Path(path)
    missing: list[Path] = []
    q = p
    while not q.exists():
        missing.append(q)
        if q.parent == q:
            break
        q = q.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_DIR_MODE)
        except FileExistsError:  # a concurrent creator won; its mode is its own
            continue
        os.chmod(d, PRIVATE_DIR_MODE)
    if not missing:
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            log.warning(
                "%s is writable by every user (mode %o): others can rename or delete what it holds; chmod 700 it",
                p,
                mode,
            )
    return p
