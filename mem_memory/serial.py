"""The one (de)serialisation of the memory's records: a stored record is its dataclass's fields,
in declaration order, as JSON-ready values.

``Record`` is the base of every stored record (``mem_memory.types``): ``to_dict`` and
``from_dict`` are generated once per class from its fields (Python source compiled on first use,
as fast as hand-written ones: ``to_dict`` is on the hot path). Per field type:

- ``datetime``: ISO 8601 text (``isoformat``), parsed back with ``fromisoformat``;
- a mapping: a plain ``dict`` copy;
- a nested record, an optional one, or a tuple of them: its own ``to_dict`` form (a list for a
  tuple), built back with its own ``from_dict``;
- anything else as it is (numbers, text, booleans, None).

``json_values`` is ``to_dict`` for orjson, which writes it to the same bytes with less work: a
UTC ``datetime`` and a plain ``dict`` are left as they are (orjson writes the one as ``isoformat``
does and the other as its copy).

Field metadata: ``STORED_NOT`` (``{"stored": False}``) leaves a field out (a value computed later,
e.g. an adjustment's impact) and ignores it when read back; ``OMIT_DEFAULT`` writes a field only
when it differs from its default (so records stored before the field existed, and the records
that keep the default, read the same bytes). ``from_dict`` builds through the class's constructor,
so a stored record is validated as it is read (a corrupt one raises ``TypeError``/``KeyError``/
``InvalidRecord``: ``mem_memory.store.integrity`` reports it).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from datetime import UTC, datetime
from types import UnionType
from typing import Any, Self

#: Field metadata: the field is not stored (and ignored when read back).
STORED_NOT: Mapping[str, bool] = {"stored": False}
#: Field metadata: the field is stored only when it is not its default.
OMIT_DEFAULT: Mapping[str, bool] = {"omit_default": True}


class Record:
    """Base of the stored records: ``to_dict`` / ``from_dict`` through the one codec."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """The record as stored (JSON-ready)."""
        return _compile(type(self))[0](self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """The record of a stored dict, validated by the constructor."""
        decode: Callable[[Mapping[str, Any]], Self] = _compile(cls)[1]
        return decode(d)


def json_values(record: Record) -> dict[str, Any]:
    """``record.to_dict()`` for orjson: the same bytes once written by ``orjson.dumps``, without
    the text of a UTC time or the copy of a plain dict (see the module docstring)."""
    return _compile(type(record))[2](record)


def _kind(tp: Any) -> tuple[str, type[Record] | None]:
    """How a field of type ``tp`` is stored: ('time'|'map'|'record'|'optional_record'|
    'records'|'plain', the nested record class)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is datetime:
        return "time", None
    if isinstance(tp, type) and issubclass(tp, Record):
        return "record", tp
    if origin in (UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and isinstance(inner[0], type) and issubclass(inner[0], Record):
            return "optional_record", inner[0]
        if datetime in inner:
            raise TypeError(f"an optional datetime field is not supported by the record codec: {tp}")
        return "plain", None
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return "map", None
    if origin is tuple and args and isinstance(args[0], type) and issubclass(args[0], Record):
        return "records", args[0]
    return "plain", None


_Encode = Callable[[Any], dict[str, Any]]
_COMPILED: dict[type, tuple[_Encode, Callable[[Mapping[str, Any]], Any], _Encode]] = {}


def _compile(cls: type) -> tuple[_Encode, Callable[[Mapping[str, Any]], Any], _Encode]:
    """The encoder, decoder and ``json_values`` of ``cls`` (generated once; the first two are then
    installed on the class so later calls go straight to them)."""
    found = _COMPILED.get(cls)
    if found is not None:
        return found
    hints = typing.get_type_hints(cls)
    env: dict[str, Any] = {"cls": cls, "fromisoformat": datetime.fromisoformat, "datetime": datetime, "UTC": UTC}
    items: list[str] = []
    late: list[str] = []
    native: list[str] = []  # json_values' items: ``items`` but for times and maps
    dec: list[str] = ["    values = dict(d)"]
    for f in fields(cls):
        name = f.name
        if not f.metadata.get("stored", True):
            dec.append(f"    values.pop({name!r}, None)")
            continue
        kind, nested = _kind(hints[name])
        v = f"self.{name}"
        if nested is not None:
            env[f"dec_{name}"] = nested.from_dict
        as_is = ""
        if kind == "time":
            out, back = f"{v}.isoformat()", f"fromisoformat(values[{name!r}])"
            as_is = f"{v} if type({v}) is datetime and {v}.tzinfo is UTC else {v}.isoformat()"
        elif kind == "map":
            out, back = f"dict({v})", ""
            as_is = f"{v} if type({v}) is dict else dict({v})"
        elif kind == "record":
            out, back = f"{v}.to_dict()", f"dec_{name}(values[{name!r}])"
        elif kind == "optional_record":
            out = f"None if {v} is None else {v}.to_dict()"
            back = f"None if values[{name!r}] is None else dec_{name}(values[{name!r}])"
        elif kind == "records":
            out, back = f"[x.to_dict() for x in {v}]", f"tuple(dec_{name}(x) for x in values[{name!r}])"
        else:
            out, back = v, ""
        if f.metadata.get("omit_default", False):
            if f.default is MISSING:
                raise TypeError(f"{cls.__name__}.{name}: OMIT_DEFAULT needs a default")
            env[f"default_{name}"] = f.default
            late.append(f"    if {v} != default_{name}:\n        d[{name!r}] = {out}")
        else:
            items.append(f"{name!r}: {out}")
            native.append(f"{name!r}: ({as_is})" if as_is else items[-1])
        if back:
            dec.append(f"    if {name!r} in values:\n        values[{name!r}] = {back}")
    enc_src = "def encode(self):\n    d = {" + ", ".join(items) + "}\n" + "\n".join(late) + "\n    return d\n"
    dec_src = "def decode(d):\n" + "\n".join(dec) + "\n    return cls(**values)\n"
    json_src = "def json_values(self):\n    d = {" + ", ".join(native) + "}\n" + "\n".join(late) + "\n    return d\n"
    exec(compile(enc_src + dec_src + json_src, f"<record codec of {cls.__name__}>", "exec"), env)  # noqa: S102
    compiled = _COMPILED[cls] = env["encode"], env["decode"], env["json_values"]
    cls.to_dict = compiled[0]  # type: ignore[attr-defined]
    cls.from_dict = staticmethod(compiled[1])  # type: ignore[attr-defined]
    return compiled


__all__ = ["OMIT_DEFAULT", "STORED_NOT", "Record", "json_values"]
