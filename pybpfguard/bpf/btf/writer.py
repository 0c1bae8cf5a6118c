"""Writing BTF: :class:`BTFBuilder` encodes the few kinds a program's own BTF needs.

Kinds: INT, PTR, STRUCT, FUNC_PROTO, FUNC (Documentation/bpf/btf.rst 2.2), plus the string table; the
blob is laid out as btf.rst section 3.1 says (header, type section, string section; string offset 0 is
""). Ids are handed out in order starting at 1; id 0 is void. ``func_info`` records are
``struct bpf_func_info {u32 insn_off; u32 type_id;}`` (include/uapi/linux/bpf.h), ``insn_off`` counted
in 8-byte instruction slots.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Sequence

import msgspec

from pybpfguard.bpf.btf.kinds import (
    BTF_HEADER,
    BTF_MAGIC,
    BTF_MAX_NAME_OFFSET,
    BTF_VERSION,
    BtfFuncLinkage,
    BtfIntEncoding,
    BtfKind,
    btf_info,
    btf_int_data,
)
from pybpfguard.bpf.errors import InvalidArgumentError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # kernel/bpf/btf.c btf_name_valid_identifier
_BTF_TYPE = struct.Struct("<III")
_PAIR = struct.Struct("<II")  # struct btf_param, struct bpf_func_info
_TRIPLE = struct.Struct("<III")  # struct btf_member
BPF_FUNC_INFO_REC_SIZE = _PAIR.size


class FuncInfo(msgspec.Struct, frozen=True, gc=False):
    """struct bpf_func_info: the function starting at instruction slot ``insn_off`` has FUNC ``type_id``."""

    insn_off: int
    type_id: int


def encode_func_info(records: Sequence[FuncInfo]) -> bytes:
    """The ``func_info`` array for BPF_PROG_LOAD: sorted by ``insn_off``, the first at 0 (as the kernel
    requires in check_btf_func). Raises ValueError otherwise."""
    offs = [r.insn_off for r in records]
    if not offs or offs[0] != 0 or any(a >= b for a, b in itertools.pairwise(offs)):
        raise InvalidArgumentError(f"func_info insn_off values {offs} must start at 0 and strictly increase")
    return b"".join(_PAIR.pack(r.insn_off, r.type_id) for r in records)


class BTFBuilder:
    """Accumulates types and strings; :meth:`encode` returns the blob. Each ``add_*`` returns the new id.

    Names are checked as the kernel checks them (C identifiers for named kinds); referenced ids must
    exist by the time :meth:`encode` runs (forward references are allowed, as in BTF).
    """

    def __init__(self) -> None:
        self._types: list[bytes] = []
        self._refs: list[tuple[int, int]] = []  # (referring id, referenced id) checked at encode()
        self._strings = bytearray(b"\0")
        self._string_offsets: dict[str, int] = {"": 0}

    def _name(self, name: str, *, required: bool) -> int:
        if not name:
            if required:
                raise InvalidArgumentError("this kind needs a name")
            return 0
        if not _IDENT.match(name):
            raise InvalidArgumentError(f"BTF name {name!r} is not a C identifier")
        off = self._string_offsets.get(name)
        if off is None:
            off = self._string_offsets[name] = len(self._strings)
            if off > BTF_MAX_NAME_OFFSET:
                raise InvalidArgumentError(f"string table past {BTF_MAX_NAME_OFFSET} bytes")
            self._strings += name.encode() + b"\0"
        return off

    def _add(self, record: bytes, *refs: int) -> int:
        self._types.append(record)
        type_id = len(self._types)
        self._refs.extend((type_id, ref) for ref in refs)
        return type_id

    def add_int(self, name: str, size: int, *, signed: bool = False) -> int:
        """An INT of *size* bytes (1, 2, 4, 8 or 16) using all its bits."""
        if size not in (1, 2, 4, 8, 16):
            raise InvalidArgumentError(f"INT size {size} bytes is not 1, 2, 4, 8 or 16")
        enc = BtfIntEncoding.BTF_INT_SIGNED if signed else BtfIntEncoding(0)
        head = _BTF_TYPE.pack(self._name(name, required=True), btf_info(BtfKind.BTF_KIND_INT), size)
        return self._add(head + struct.pack("<I", btf_int_data(enc, 8 * size)))

    def add_ptr(self, type_id: int) -> int:
        """A pointer to *type_id* (0: ``void *``)."""
        return self._add(_BTF_TYPE.pack(0, btf_info(BtfKind.BTF_KIND_PTR), type_id), type_id)

    def add_struct(self, name: str, size: int, members: Sequence[tuple[str, int, int]]) -> int:
        """A STRUCT of *size* bytes; *members* are ``(name, type_id, bit_offset)``, no bitfields."""
        body = b"".join(_TRIPLE.pack(self._name(n, required=False), tid, off) for n, tid, off in members)
        head = _BTF_TYPE.pack(self._name(name, required=False), btf_info(BtfKind.BTF_KIND_STRUCT, len(members)), size)
        return self._add(head + body, *(tid for _, tid, _ in members))

    def add_func_proto(self, return_type_id: int, params: Sequence[tuple[str, int]]) -> int:
        """A FUNC_PROTO returning *return_type_id* (0: void) with *params* ``(name, type_id)``."""
        body = b"".join(_PAIR.pack(self._name(n, required=False), tid) for n, tid in params)
        head = _BTF_TYPE.pack(0, btf_info(BtfKind.BTF_KIND_FUNC_PROTO, len(params)), return_type_id)
        return self._add(head + body, return_type_id, *(tid for _, tid in params))

    def add_func(self, name: str, proto_id: int, linkage: BtfFuncLinkage = BtfFuncLinkage.BTF_FUNC_STATIC) -> int:
        """A FUNC named *name* of FUNC_PROTO *proto_id*; *linkage* goes in vlen."""
        info = btf_info(BtfKind.BTF_KIND_FUNC, int(linkage))
        return self._add(_BTF_TYPE.pack(self._name(name, required=True), info, proto_id), proto_id)

    def encode(self) -> bytes:
        """The blob: ``struct btf_header`` (24 bytes), types, strings. Raises ValueError for a dangling id."""
        for src, ref in self._refs:
            if ref > len(self._types):
                raise InvalidArgumentError(
                    f"type id {src} refers to type id {ref}, past the last id {len(self._types)}")
        types = b"".join(self._types)
        header = BTF_HEADER.pack(
            BTF_MAGIC, BTF_VERSION, 0, BTF_HEADER.size, 0, len(types), len(types), len(self._strings)
        )
        return header + types + bytes(self._strings)
