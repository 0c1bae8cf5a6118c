"""Typed C struct layouts, declared once: encode map keys/values in Python, give offsets to generators.

A :class:`Layout` follows the C rules a BPF program's struct obeys (x86-64/arm64 SysV ABI, as clang lays
out ``struct`` for ``-target bpf``): each field at the next multiple of its alignment, the struct size
rounded up to its largest alignment, little-endian unless the type says ``be``. Implicit padding is
zero-filled on pack, which matters for hash-map keys: the kernel hashes every key byte.

Field types (strings, converted once at declaration):

=================  =====================  ====================================================
type               Python value           notes
=================  =====================  ====================================================
``u8 u16 u32 u64``  int                   unsigned, range-checked
``s8 s16 s32 s64``  int                   two's complement
``be16 be32 be64``  int                   network byte order (``__be32`` addresses, ports)
``char[N]``         bytes (or str, UTF-8)  NUL-padded; unpack stops at the first NUL; > N bytes raises
``u8[N]``           bytes                  exactly N bytes (an IPv6 address, a SHA-256 digest)
``T[N]``            tuple of N ints        T any integer type above
a ``Layout``        that layout's value    nested struct, aligned to its own alignment
=================  =====================  ====================================================

Values are frozen, hashable msgspec Structs built per layout (``layout.value(ino=1, dev=2)``; omitted
fields are zero). Example, the agent's inode key (docs/maps.md)::

    INODE_KEY = Layout("inode_key", [("ino", "u64"), ("dev", "u32"), ("pad", "u32")])
    INODE_KEY.size == 16; INODE_KEY.offset("dev") == 8
    INODE_KEY.unpack(INODE_KEY.pack(ino=5, dev=271581186)).dev == 271581186
"""

from __future__ import annotations

import itertools
import operator
import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from pybpfguard.bpf.errors import BPFError

# name -> (struct code, size in bytes, signed, big-endian)
_INTS: dict[str, tuple[str, int, bool, bool]] = {
    "u8": ("B", 1, False, False),
    "u16": ("H", 2, False, False),
    "u32": ("I", 4, False, False),
    "u64": ("Q", 8, False, False),
    "s8": ("b", 1, True, False),
    "s16": ("h", 2, True, False),
    "s32": ("i", 4, True, False),
    "s64": ("q", 8, True, False),
    "be16": ("H", 2, False, True),
    "be32": ("I", 4, False, True),
    "be64": ("Q", 8, False, True),
}
_ARRAY = re.compile(r"^(\w+)\[(\d+)\]$")


class LayoutError(BPFError, ValueError):
    """A layout declaration or a value that does not fit it; names the layout, the field and the limit."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field as placed: ``name``, ``offset`` and ``size`` in bytes, ``type`` as declared."""

    name: str
    offset: int
    size: int
    align: int
    type: str | Layout


@dataclass(frozen=True, slots=True)
class _Codec:
    """How one field maps onto the flat ``struct`` argument list: format, arg count, converters."""

    fmt: str
    nargs: int
    encode: Callable[[Any], Sequence[Any]]
    decode: Callable[[Sequence[Any]], Any]
    default: Callable[[], Any]
    plain: bool = False  # a little-endian int: struct itself range-checks it, decode is the identity


def _int_range(kind: str) -> tuple[int, int]:
    _, size, signed, _ = _INTS[kind]
    bits = size * 8
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


class Layout:
    """A C struct: ordered named fields with C alignment. See the module docstring for field types.

    *packed* drops alignment (``__attribute__((packed))``). Raises LayoutError for an unknown type, a
    duplicate name or an empty field list.
    """

    def __init__(self, name: str, fields: Iterable[tuple[str, str | Layout]], *, packed: bool = False) -> None:
        self.name = name
        self.packed = packed
        placed: list[Field] = []
        codecs: list[_Codec] = []
        fmt = ["<"]
        offset = 0
        align = 1
        for fname, ftype in fields:
            if any(f.name == fname for f in placed):
                raise LayoutError(f"layout {name}: duplicate field {fname!r}")
            codec, size, falign = self._compile(fname, ftype)
            falign = 1 if packed else falign
            start = -(-offset // falign) * falign
            if start > offset:
                fmt.append(f"{start - offset}x")
            fmt.append(codec.fmt)
            placed.append(Field(fname, start, size, falign, ftype))
            codecs.append(codec)
            offset = start + size
            align = max(align, falign)
        if not placed:
            raise LayoutError(f"layout {name}: no fields")
        self.align = align
        self.size = -(-offset // align) * align
        if self.size > offset:
            fmt.append(f"{self.size - offset}x")
        self.fields: tuple[Field, ...] = tuple(placed)
        self._by_name = {f.name: f for f in placed}
        self._codecs = tuple(codecs)
        self._struct = struct.Struct("".join(fmt))
        self.value_type: type[msgspec.Struct] = msgspec.defstruct(
            name,
            [(f.name, Any, msgspec.field(default_factory=c.default)) for f, c in zip(placed, codecs, strict=True)],
            frozen=True,
        )
        # Fast path for structs of little-endian ints only (most keys): one attrgetter, one struct call,
        # positional construction. Any struct.error falls back to the checked path, which names the field.
        self._plain = all(c.plain for c in codecs)
        names = [f.name for f in placed]
        self._getter = operator.attrgetter(*names) if len(names) > 1 else (lambda v: (getattr(v, names[0]),))

    # -- declaration -------------------------------------------------------------------------------------
    def _compile(self, fname: str, ftype: str | Layout) -> tuple[_Codec, int, int]:
        """Return (codec, size, alignment) for one declared field type."""
        where = f"layout {self.name}, field {fname}"
        if isinstance(ftype, Layout):
            return self._nested(where, ftype), ftype.size, ftype.align
        if ftype in _INTS:
            code, size, _, big = _INTS[ftype]
            return self._scalar(where, ftype, code, size, big), size, size
        match = _ARRAY.match(ftype) if isinstance(ftype, str) else None
        if match is None:
            raise LayoutError(f"{where}: unknown type {ftype!r} (want u8..u64, s8..s64, be16..be64, T[N], Layout)")
        elem, count = match.group(1), int(match.group(2))
        if count <= 0:
            raise LayoutError(f"{where}: array {ftype!r} needs a positive length")
        if elem in ("char", "u8"):
            return self._bytes(where, count, nul_padded=elem == "char"), count, 1
        if elem not in _INTS:
            raise LayoutError(f"{where}: unknown array element type {elem!r}")
        code, size, _, big = _INTS[elem]
        return self._int_array(where, elem, code, size, big, count), size * count, size

    @staticmethod
    def _scalar(where: str, kind: str, code: str, size: int, big: bool) -> _Codec:
        lo, hi = _int_range(kind)

        def check(v: Any) -> int:
            if not isinstance(v, int) or not lo <= v <= hi:
                raise LayoutError(f"{where}: {v!r} is not a {kind} ({lo}..{hi})")
            return v

        if big:
            # struct cannot mix byte orders in one format: carry big-endian ints as bytes.
            return _Codec(
                f"{size}s",
                1,
                lambda v: (check(v).to_bytes(size, "big"),),
                lambda a: int.from_bytes(a[0], "big"),
                int,
            )
        return _Codec(code, 1, lambda v: (check(v),), lambda a: a[0], int, plain=True)

    @staticmethod
    def _bytes(where: str, count: int, *, nul_padded: bool) -> _Codec:
        def enc(v: Any) -> tuple[bytes]:
            raw = v.encode() if isinstance(v, str) and nul_padded else v
            if not isinstance(raw, (bytes, bytearray, memoryview)):
                raise LayoutError(f"{where}: {v!r} is not bytes")
            raw = bytes(raw)
            if len(raw) > count or (not nul_padded and len(raw) != count):
                limit = f"at most {count}" if nul_padded else f"exactly {count}"
                raise LayoutError(f"{where}: value is {len(raw)} bytes, want {limit}")
            return (raw,)

        if nul_padded:
            return _Codec(f"{count}s", 1, enc, lambda a: a[0].split(b"\0", 1)[0], bytes)
        return _Codec(f"{count}s", 1, enc, lambda a: a[0], lambda: bytes(count))

    @classmethod
    def _int_array(cls, where: str, kind: str, code: str, size: int, big: bool, count: int) -> _Codec:
        elem = cls._scalar(f"{where}[]", kind, code, size, big)

        def enc(v: Any) -> list[Any]:
            if len(v) != count:
                raise LayoutError(f"{where}: {len(v)} elements, want {count}")
            return [elem.encode(x)[0] for x in v]

        fmt = f"{size}s" * count if big else f"{count}{code}"
        return _Codec(fmt, count, enc, lambda a: tuple(elem.decode((x,)) for x in a), lambda: (0,) * count)

    @staticmethod
    def _nested(where: str, inner: Layout) -> _Codec:
        def enc(v: Any) -> list[Any]:
            if isinstance(v, Mapping):
                v = inner.value(**v)
            elif not isinstance(v, inner.value_type):
                raise LayoutError(f"{where}: {v!r} is not a {inner.name} value")
            return inner._flatten(v)

        fmt = inner._struct.format[1:]  # the nested format minus its byte-order prefix
        return _Codec(fmt, inner._nargs(), enc, inner._build, inner.value)

    # -- encoding ----------------------------------------------------------------------------------------
    def _nargs(self) -> int:
        return sum(c.nargs for c in self._codecs)

    def _flatten(self, value: Any) -> list[Any]:
        out: list[Any] = []
        for f, c in zip(self.fields, self._codecs, strict=True):
            out.extend(c.encode(getattr(value, f.name)))
        return out

    def _build(self, flat: Sequence[Any]) -> Any:
        kw = {}
        i = 0
        for f, c in zip(self.fields, self._codecs, strict=True):
            kw[f.name] = c.decode(flat[i : i + c.nargs])
            i += c.nargs
        return self.value_type(**kw)

    def value(self, **fields: Any) -> Any:
        """A value of this layout; omitted fields are zero. Raises LayoutError for an unknown field."""
        unknown = set(fields) - self._by_name.keys()
        if unknown:
            raise LayoutError(f"layout {self.name}: no field {sorted(unknown)[0]!r}")
        return self.value_type(**fields)

    def _coerce(self, value: Any, kw: dict[str, Any]) -> Any:
        if value is None:
            return self.value(**kw)
        if isinstance(value, Mapping):
            return self.value(**value)
        if not isinstance(value, self.value_type):
            raise LayoutError(f"layout {self.name}: {value!r} is not a {self.name} value")
        return value

    def pack(self, value: Any = None, /, **fields: Any) -> bytes:
        """Encode a value (or a mapping, or keyword fields) into exactly ``size`` bytes."""
        if self._plain and type(value) is self.value_type:
            try:
                return self._struct.pack(*self._getter(value))
            except (struct.error, TypeError):
                pass  # the checked path below raises a LayoutError that names the field and its range
        try:
            return self._struct.pack(*self._flatten(self._coerce(value, fields)))
        except struct.error as err:  # a checked value should never get here; keep the layout's name
            raise LayoutError(f"layout {self.name}: {err}") from err

    def pack_into(self, buf: Any, offset: int, value: Any) -> None:
        """Encode *value* into writable *buf* at byte *offset* (for batch buffers)."""
        self._struct.pack_into(buf, offset, *self._flatten(self._coerce(value, {})))

    def pack_many(self, values: Sequence[Any]) -> bytes:
        """``len(values) * size`` bytes, the values packed back to back (batch buffers)."""
        if self._plain and set(map(type, values)) == {self.value_type}:
            try:
                return b"".join(itertools.starmap(self._struct.pack, map(self._getter, values)))
            except (struct.error, TypeError):
                pass  # the per-value path raises a LayoutError naming the field
        return b"".join(map(self.pack, values))

    def unpack_many(self, data: bytes | bytearray | memoryview, count: int) -> list[Any]:
        """The first *count* values packed back to back in *data*."""
        view = memoryview(data)[: count * self.size]
        if self._plain:
            return list(itertools.starmap(self.value_type, self._struct.iter_unpack(view)))
        return [self._build(t) for t in self._struct.iter_unpack(view)]

    def unpack(self, data: bytes | bytearray | memoryview) -> Any:
        """Decode exactly ``size`` bytes into a value; LayoutError if the length differs."""
        if len(data) != self.size:
            raise LayoutError(f"layout {self.name}: {len(data)} bytes, want {self.size}")
        if self._plain:
            return self.value_type(*self._struct.unpack(data))
        return self._build(self._struct.unpack(data))

    def unpack_from(self, data: Any, offset: int = 0) -> Any:
        """Decode ``size`` bytes of *data* starting at byte *offset*."""
        if self._plain:
            return self.value_type(*self._struct.unpack_from(data, offset))
        return self._build(self._struct.unpack_from(data, offset))

    # -- offsets for program generators ------------------------------------------------------------------
    def field(self, path: str) -> Field:
        """The field at dotted *path* (``"key.ino"``), its offset made absolute from this struct's start."""
        head, _, rest = path.partition(".")
        try:
            f = self._by_name[head]
        except KeyError as err:
            raise LayoutError(f"layout {self.name}: no field {head!r}") from err
        if not rest:
            return f
        if not isinstance(f.type, Layout):
            raise LayoutError(f"layout {self.name}: field {head!r} is {f.type}, not a struct")
        inner = f.type.field(rest)
        return Field(path, f.offset + inner.offset, inner.size, inner.align, inner.type)

    def offset(self, path: str) -> int:
        """Byte offset of the field at dotted *path* from the start of the struct."""
        return self.field(path).offset

    def __repr__(self) -> str:
        body = ", ".join(
            f"{f.name}@{f.offset}:{f.type if isinstance(f.type, str) else f.type.name}" for f in self.fields
        )
        return f"Layout({self.name}, size={self.size}, {body})"


class Scalar:
    """A bare integer key or value (``Scalar("u32")`` for an array index), with the Layout encode API."""

    def __init__(self, kind: str) -> None:
        if kind not in _INTS:
            raise LayoutError(f"scalar type {kind!r} unknown (want u8..u64, s8..s64, be16..be64)")
        code, size, _, big = _INTS[kind]
        self.name = kind
        self.size = self.align = size
        self._struct = struct.Struct((">" if big else "<") + code)
        self._order, self._code = (">" if big else "<"), code
        self._lo, self._hi = _int_range(kind)

    def pack(self, value: int) -> bytes:
        if not isinstance(value, int) or not self._lo <= value <= self._hi:
            raise LayoutError(f"{value!r} is not a {self.name} ({self._lo}..{self._hi})")
        return self._struct.pack(value)

    def pack_into(self, buf: Any, offset: int, value: int) -> None:
        self._struct.pack_into(buf, offset, value)

    def pack_many(self, values: Sequence[int]) -> bytes:
        """``len(values) * size`` bytes in one ``struct`` call (batch buffers); LayoutError names a bad value."""
        try:
            return struct.pack(f"{self._order}{len(values)}{self._code}", *values)
        except struct.error:
            return b"".join(map(self.pack, values))  # raises LayoutError for the first value that does not fit

    def unpack_many(self, data: bytes | bytearray | memoryview, count: int) -> list[int]:
        """The first *count* values packed back to back in *data*."""
        return list(struct.unpack_from(f"{self._order}{count}{self._code}", data))

    def unpack(self, data: bytes | bytearray | memoryview) -> int:
        if len(data) != self.size:
            raise LayoutError(f"scalar {self.name}: {len(data)} bytes, want {self.size}")
        return int(self._struct.unpack(data)[0])

    def unpack_from(self, data: Any, offset: int = 0) -> int:
        return int(self._struct.unpack_from(data, offset)[0])

    def __repr__(self) -> str:
        return f"Scalar({self.name})"
