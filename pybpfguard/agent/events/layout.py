"""Ring-buffer record layouts declared once: the decoder's ``struct.Struct`` and the generators' offsets.

A :class:`Layout` is a table of ``(name, offset, ctype)`` rows for the fixed part of one record, plus
an optional variable-length tail (bytes whose length is carried in a header field). From the table it
derives the ``struct.Struct`` the decoder unpacks with (padding becomes ``x`` so it yields no value)
and the byte offsets a BPF program generator writes to (``BLOCK.offset("ino")``). The table is
checked at import: natural alignment, no overlap, no gap that is not declared.

All integers are little-endian host integers (the ring carries what the BPF program stored; this
agent runs on x86-64 and arm64, both little-endian). docs/records.md requires ``u32 type`` at offset 0.
The concrete layouts are in :mod:`pybpfguard.agent.events.records` and in ``docs/records.md``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from pybpfguard.agent.errors import AgentError

# ctype -> (struct format char, element size in bytes)
_SCALARS: dict[str, tuple[str, int]] = {"u8": ("B", 1), "u16": ("H", 2), "u32": ("I", 4), "u64": ("Q", 8)}
_ARRAY = re.compile(r"^(u8|u16|u32|u64|char|pad)\[(\d+)\]$")


class LayoutError(AgentError, ValueError):
    """A layout table is inconsistent: ``.layout`` and ``.field`` name where, the message says what."""

    def __init__(self, layout: str, field: str, what: str) -> None:
        super().__init__(f"record layout {layout}: field {field}: {what}")
        self.layout = layout
        self.field = field


@dataclass(frozen=True, slots=True)
class Field:
    """One fixed field: ``offset`` and ``size`` in bytes; ``count`` > 1 for scalar arrays (``u32[8]``)."""

    name: str
    offset: int
    ctype: str
    size: int
    align: int
    fmt: str  # struct format for this field ("Q", "16s", "8I", "3x")
    values: int  # how many values unpack yields for it (0 for padding)

    @classmethod
    def parse(cls, layout: str, name: str, offset: int, ctype: str) -> Field:
        if ctype in _SCALARS:
            ch, size = _SCALARS[ctype]
            return cls(name, offset, ctype, size, size, ch, 1)
        m = _ARRAY.match(ctype)
        if m is None:
            raise LayoutError(layout, name, f"unknown ctype {ctype!r}")
        elem, count = m.group(1), int(m.group(2))
        if count < 1:
            raise LayoutError(layout, name, f"array of {count} elements")
        if elem == "char":
            return cls(name, offset, ctype, count, 1, f"{count}s", 1)
        if elem == "pad":
            return cls(name, offset, ctype, count, 1, f"{count}x", 0)
        ch, size = _SCALARS[elem]
        return cls(name, offset, ctype, size * count, size, f"{count}{ch}", count)


class Layout:
    """The layout of one ring record type.

    *rows* are ``(name, offset, ctype)`` with ctype ``u8|u16|u32|u64``, ``char[N]``, ``uNN[N]`` or
    ``pad[N]``. *tail* names the variable-length byte string that follows the fixed part, *tail_len*
    the header field holding its length in bytes, *tail_max* its largest length. Raises
    :class:`LayoutError` when offsets are misaligned, overlap or leave an undeclared hole, or when the
    fixed size is not a multiple of 8 (ring records are 8-byte aligned, so the tail starts aligned).
    """

    __slots__ = ("_by_name", "_value_index", "fields", "name", "record_type", "struct", "tail", "tail_len",
                 "tail_max")

    def __init__(self, name: str, record_type: int, rows: list[tuple[str, int, str]], *,
                 tail: str | None = None, tail_len: str | None = None, tail_max: int = 0) -> None:
        self.name = name
        self.record_type = record_type
        self.fields = tuple(Field.parse(name, *row) for row in rows)
        self._by_name = {f.name: f for f in self.fields}
        pos = 0
        fmt = ["<"]
        index = 0
        self._value_index: dict[str, int] = {}
        for f in self.fields:
            if f.offset != pos:
                raise LayoutError(name, f.name, f"declared at offset {f.offset}, previous field ends at {pos}")
            if f.offset % f.align:
                raise LayoutError(name, f.name, f"offset {f.offset} not aligned to {f.align}")
            fmt.append(f.fmt)
            self._value_index[f.name] = index
            index += f.values
            pos += f.size
        if pos % 8:
            raise LayoutError(name, "<end>", f"fixed size {pos} is not a multiple of 8")
        if self.fields[0].name != "type" or self.fields[0].ctype != "u32":
            raise LayoutError(name, self.fields[0].name, "docs/records.md wants u32 type at offset 0")
        if (tail is None) != (tail_len is None) or (tail_len is not None and tail_len not in self._by_name):
            raise LayoutError(name, str(tail), "a tail needs a declared length field")
        self.struct = struct.Struct("".join(fmt))
        self.tail = tail
        self.tail_len = tail_len
        self.tail_max = tail_max

    @property
    def size(self) -> int:
        """Size in bytes of the fixed part; the tail (if any) starts here."""
        return self.struct.size

    @property
    def max_size(self) -> int:
        """Largest record in bytes: fixed part plus the longest tail."""
        return self.struct.size + self.tail_max

    def offset(self, name: str) -> int:
        """Byte offset of field *name* (the tail's offset is :attr:`size`). Raises KeyError if unknown."""
        if name == self.tail:
            return self.size
        return self._by_name[name].offset

    def field(self, name: str) -> Field:
        """The :class:`Field` called *name*. Raises KeyError if unknown."""
        return self._by_name[name]

    def value_index(self, name: str) -> int:
        """Index of *name*'s first value in the tuple ``self.struct.unpack_from`` returns."""
        return self._value_index[name]

    def value_names(self) -> tuple[str, ...]:
        """Names in unpack order, one per value (arrays repeat their name, padding yields none)."""
        return tuple(f.name for f in self.fields for _ in range(f.values))

    def require_unpack_order(self, *names: str) -> None:
        """Fail at import when a decoder's tuple unpacking no longer matches this table."""
        if tuple(names) != self.value_names():
            raise LayoutError(self.name, "<unpack>", f"decoder expects {names}, table gives {self.value_names()}")

    def pack(self, **values: object) -> bytes:
        """Build a record (fixed part and tail) from field values; missing integer fields are 0.

        Used by tests and benchmarks to make records the way a BPF program writes them. The tail
        bytes go in under the tail's name; its length field is set from them unless given.
        """
        args: list[object] = []
        tail = bytes(values.pop(self.tail, b"")) if self.tail else b""  # type: ignore[call-overload]
        if self.tail_len and self.tail_len not in values:
            values[self.tail_len] = len(tail)
        values.setdefault("type", self.record_type)
        for f in self.fields:
            v = values.pop(f.name, None)
            if f.values == 0:
                continue
            if f.values > 1:
                seq = list(v or ())  # type: ignore[call-overload]
                args.extend(seq + [0] * (f.values - len(seq)))
            elif f.fmt.endswith("s"):
                args.append(v or b"")
            else:
                args.append(v or 0)
        if values:
            raise LayoutError(self.name, ",".join(values), "not in the layout")
        return self.struct.pack(*args) + tail

    def markdown(self) -> str:
        """The table as docs/records.md shows it: field, offset, size, type."""
        lines = ["| Field | Offset | Size | Type |", "|---|---|---|---|"]
        lines += [f"| `{f.name}` | {f.offset} | {f.size} | {f.ctype} |" for f in self.fields]
        if self.tail:
            lines.append(f"| `{self.tail}` | {self.size} | `{self.tail_len}` (≤ {self.tail_max}) | u8[] |")
        return "\n".join(lines)
