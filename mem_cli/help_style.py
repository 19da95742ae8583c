"""Help texts in the command line's words, not Python's: typer >= 0.2x shows every option's
annotation (``<bool>`` beside a flag that takes no value, ``<list[Path]>``, ``<str>``); this shows
nothing beside a flag and click's metavars (TEXT, INTEGER, NUMBER, PATH) beside the others.
An option's own ``metavar`` wins. Older typer versions already print click's metavars."""

from __future__ import annotations

import re
from typing import Any

#: Python annotation (as typer labels it) -> what the help shows.
LABELS = {
    "str": "TEXT",
    "int": "INTEGER",
    "float": "NUMBER",
    "bool": "BOOLEAN",
    "Path": "PATH",
    "path": "PATH",
    "file": "FILE",
    "directory": "DIRECTORY",
    "datetime": "DATETIME",
}
_LIST = re.compile(r"^list\[(.*)\]$")


def label(python: str) -> str:
    """Click's metavar for typer's type label (``<list[Path]>`` -> ``PATH``; choices kept)."""
    inner = python[1:-1] if python.startswith("<") and python.endswith(">") else python
    match = _LIST.match(inner)
    if match:
        inner = match.group(1)
    if "|" in inner:  # choices: a|b|c
        return f"[{inner}]"
    return LABELS.get(inner, inner.upper())


def install() -> None:
    """Replace typer's type labels in help output (idempotent; a no-op on typer without them)."""
    from typer import core

    base: Any = getattr(core, "_TyperParameter", None)
    original = getattr(base, "display_type", None)
    if original is None or getattr(original, "mem_help_style", False):
        return

    def display_type(self: Any, ctx: Any) -> str:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return ""  # a flag takes no value
        return label(original(self, ctx))

    display_type.mem_help_style = True  # type: ignore[attr-defined]
    base.display_type = display_type
