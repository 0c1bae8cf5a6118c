"""Turn the keys and values a caller passes into the exact bytes a map takes, and back.

Accepted forms, for a key or value of ``size`` bytes:
- bytes-like of exactly ``size`` bytes (always; raw bytes come back from maps without a layout);
- an ``int`` when there is no layout and ``size`` is 1, 2, 4 or 8 (little-endian, unsigned; decoded
  values stay bytes unless a ``Scalar`` layout is given);
- a value of the spec's Layout (or a mapping of its fields, or an int for a Scalar).

Per-CPU values (kernel/bpf/hashtab.c ``bpf_percpu_hash_copy``, arraymap.c ``bpf_percpu_array_copy``) are
one slot per possible CPU, each ``round_up(value_size, 8)`` bytes: lookups return a list (index i is the
i-th possible CPU), updates take a list of that length or one value that is copied to every CPU.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from pybpfguard.bpf.layout import Layout, LayoutError, Scalar

_INT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_BYTES_TYPES = frozenset({bytes, bytearray, memoryview})


def round_up8(size: int) -> int:
    return (size + 7) & ~7


class ElemCodec:
    """Encode/decode one key or value of a map. *what* names it in errors (``"map 'x' key"``)."""

    __slots__ = ("_int", "layout", "size", "what")

    def __init__(self, size: int, layout: Layout | Scalar | None, what: str) -> None:
        self.size = size
        self.layout = layout
        self.what = what
        code = _INT_CODES.get(size)
        self._int = struct.Struct("<" + code) if code and layout is None else None

    def encode(self, obj: Any) -> bytes:
        """The ``size`` bytes for *obj*; raises LayoutError (a ValueError) naming the map and the limit."""
        if isinstance(obj, (bytes, bytearray, memoryview)):
            if len(obj) != self.size:
                raise LayoutError(f"{self.what}: {len(obj)} bytes, want {self.size}")
            return bytes(obj)
        if self.layout is not None:
            try:
                return self.layout.pack(obj)
            except LayoutError as err:
                raise LayoutError(f"{self.what}: {err}") from err
        if isinstance(obj, int) and self._int is not None:
            try:
                return self._int.pack(obj)
            except struct.error as err:
                raise LayoutError(f"{self.what}: {obj} does not fit in {self.size} unsigned bytes") from err
        raise LayoutError(f"{self.what}: cannot encode {type(obj).__name__} {obj!r} into {self.size} bytes")

    def decode(self, raw: bytes) -> Any:
        """A layout value, or the raw bytes when the spec has no layout."""
        return raw if self.layout is None else self.layout.unpack(raw)

    def encode_many(self, items: Sequence[Any]) -> bytes:
        """``len(items) * size`` contiguous bytes, for batch buffers."""
        types = set(map(type, items))
        if self.layout is not None and not types & _BYTES_TYPES:
            try:
                return self.layout.pack_many(items)
            except LayoutError as err:
                raise LayoutError(f"{self.what}: {err}") from err
        if self._int is not None and types == {int}:
            try:
                return struct.pack(f"<{len(items)}{self._int.format[1:]}", *items)
            except struct.error:
                pass  # one out of range: the per-item path names the culprit
        return b"".join(map(self.encode, items))

    def decode_many(self, raw: bytes, count: int) -> list[Any]:
        """The first *count* keys or values packed back to back in *raw*."""
        if self.layout is not None:
            return self.layout.unpack_many(raw, count)
        size = self.size
        return [raw[i : i + size] for i in range(0, count * size, size)]


class PerCpuCodec:
    """Values of a per-CPU map: *ncpus* slots of ``round_up(size, 8)`` bytes each."""

    __slots__ = ("elem", "ncpus", "size", "stride")

    def __init__(self, elem: ElemCodec, ncpus: int) -> None:
        self.elem = elem
        self.ncpus = ncpus
        self.stride = round_up8(elem.size)
        self.size = self.stride * ncpus

    def encode(self, obj: Any) -> bytes:
        """One value broadcast to every CPU, or a list/tuple of exactly ``ncpus`` values."""
        pad = bytes(self.stride - self.elem.size)
        if isinstance(obj, (list, tuple)):
            if len(obj) != self.ncpus:
                raise LayoutError(f"{self.elem.what}: {len(obj)} per-CPU values, want {self.ncpus} (possible CPUs)")
            return b"".join(self.elem.encode(v) + pad for v in obj)
        return (self.elem.encode(obj) + pad) * self.ncpus

    def decode(self, raw: bytes) -> list[Any]:
        size, stride = self.elem.size, self.stride
        return [self.elem.decode(raw[i : i + size]) for i in range(0, stride * self.ncpus, stride)]

    def encode_many(self, items: Sequence[Any]) -> bytes:
        return b"".join(map(self.encode, items))

    def decode_many(self, raw: bytes, count: int) -> list[list[Any]]:
        size = self.size
        return [self.decode(raw[i : i + size]) for i in range(0, count * size, size)]
