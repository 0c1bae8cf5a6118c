"""The object's ``.BTF`` made loadable by BPF_BTF_LOAD, as libbpf does before loading it
(libbpf.c btf_fixup_datasec, bpf_object__sanitize_btf):

- clang leaves each DATASEC's size and its variables' offsets 0: the size becomes the ELF section's,
  each offset its symbol's value, and the entries are sorted by offset (the kernel wants them ascending,
  kernel/bpf/btf.c btf_datasec_check_meta);
- extern FUNCs (kfunc declarations) get global linkage, which the kernel accepts (btf_func_check_meta),
  and extern VARs allocated linkage (btf_var_check_meta refuses extern);
- in a DATASEC of externs (``.ksyms``), extern VARs become allocated ints and extern FUNCs are
  listed through one appended dummy VAR, as libbpf does; no existing type id moves.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from pybpfguard.bpf.btf.kinds import BtfKind
from pybpfguard.bpf.elf.errors import ELFFormatError

_HDR = struct.Struct("<HBBIIIII")
_EXTRA = {  # bytes after the 12-byte header: fixed part, per-vlen part
    BtfKind.BTF_KIND_INT: (4, 0),
    BtfKind.BTF_KIND_ARRAY: (12, 0),
    BtfKind.BTF_KIND_STRUCT: (0, 12),
    BtfKind.BTF_KIND_UNION: (0, 12),
    BtfKind.BTF_KIND_ENUM: (0, 8),
    BtfKind.BTF_KIND_FUNC_PROTO: (0, 8),
    BtfKind.BTF_KIND_VAR: (4, 0),
    BtfKind.BTF_KIND_DATASEC: (0, 12),
    BtfKind.BTF_KIND_DECL_TAG: (4, 0),
    BtfKind.BTF_KIND_ENUM64: (0, 12),
}
BTF_FUNC_GLOBAL = 1
BTF_FUNC_EXTERN = 2
BTF_VAR_GLOBAL_ALLOCATED = 1
BTF_VAR_GLOBAL_EXTERN = 2
DUMMY_VAR = "dummy_ksym"  # libbpf's name for the stand-in of extern functions in .ksyms


class _Blob:
    """The type records of a BTF blob, patched in place, with types and strings appendable."""

    def __init__(self, raw: bytes, source: str) -> None:
        _magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(raw)
        self.header = bytearray(raw[:hdr_len])
        self.types = bytearray(raw[hdr_len + type_off : hdr_len + type_off + type_len])
        self.strings = bytearray(raw[hdr_len + str_off : hdr_len + str_off + str_len])
        self.records: list[tuple[int, int, int, int]] = []  # offset in types, kind, vlen, name_off
        pos = 0
        while pos < len(self.types):
            if pos + 12 > len(self.types):
                raise ELFFormatError(source, ".BTF", f"type record at byte {pos} is truncated")
            name_off, info, _size = struct.unpack_from("<III", self.types, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            fixed, per = _EXTRA.get(kind, (0, 0))  # type: ignore[call-overload]
            self.records.append((pos, kind, vlen, name_off))
            pos += 12 + fixed + per * vlen

    def name(self, off: int) -> str:
        end = self.strings.find(b"\0", off)
        return self.strings[off:end].decode(errors="replace") if 0 <= off < len(self.strings) and end >= 0 else ""

    def var_linkage(self, pos: int) -> int:
        """The linkage of the VAR record at *pos* (struct btf_var follows the 12-byte header)."""
        return struct.unpack_from("<I", self.types, pos + 12)[0]

    def add_string(self, text: str) -> int:
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def add_type(self, record: bytes) -> int:
        self.types += record
        self.records.append((len(self.types) - len(record), record[7] & 0x1F, 0, 0))
        return len(self.records)

    def int_type(self) -> int:
        for i, (pos, kind, _vlen, _name) in enumerate(self.records):
            if kind == BtfKind.BTF_KIND_INT and struct.unpack_from("<I", self.types, pos + 8)[0] == 4:
                return i + 1
        return self.add_type(struct.pack("<IIII", self.add_string("int"), int(BtfKind.BTF_KIND_INT) << 24, 4,
                                         (1 << 24) | 32))

    def encode(self) -> bytes:
        header = bytearray(self.header)
        struct.pack_into("<IIII", header, 8, 0, len(self.types), len(self.types), len(self.strings))
        return bytes(header) + bytes(self.types) + bytes(self.strings)


def fixup_btf(raw: bytes, section_sizes: Mapping[str, int], symbol_offsets: Mapping[str, int],
              source: str = "<bytes>") -> bytes:
    """A copy of *raw* with the fixes above. Raises ELFFormatError for a record running past the blob."""
    blob = _Blob(raw, source)
    for pos, kind, vlen, _name_off in list(blob.records):
        if kind == BtfKind.BTF_KIND_FUNC and vlen == BTF_FUNC_EXTERN:
            info = struct.unpack_from("<I", blob.types, pos + 4)[0]
            struct.pack_into("<I", blob.types, pos + 4, (info & ~0xFFFF) | BTF_FUNC_GLOBAL)
        elif kind == BtfKind.BTF_KIND_VAR and blob.var_linkage(pos) == BTF_VAR_GLOBAL_EXTERN:
            struct.pack_into("<I", blob.types, pos + 12, BTF_VAR_GLOBAL_ALLOCATED)
    for pos, kind, vlen, name_off in list(blob.records):
        if kind == BtfKind.BTF_KIND_DATASEC:
            _fix_datasec(blob, pos, vlen, blob.name(name_off), section_sizes, symbol_offsets)
    return blob.encode()


def _fix_datasec(blob: _Blob, pos: int, vlen: int, sec: str, sizes: Mapping[str, int],
                 offsets: Mapping[str, int]) -> None:
    entries = [struct.unpack_from("<III", blob.types, pos + 12 + 12 * i) for i in range(vlen)]

    def var_name(type_id: int) -> str | None:
        """The name of global variable *type_id*, None unless it is a defined VAR with a symbol."""
        if not 0 < type_id <= len(blob.records):
            return None
        var_pos, kind, _vlen, name_off = blob.records[type_id - 1]
        linkage = blob.var_linkage(var_pos) if kind == BtfKind.BTF_KIND_VAR else -1
        found = blob.name(name_off)
        return found if linkage != BTF_VAR_GLOBAL_EXTERN and found in offsets else None

    names = [var_name(type_id) for type_id, _, _ in entries]
    if sec in sizes and all(n is not None for n in names):
        fixed = sorted((offsets[n], t, size) for n, (t, _, size) in zip(names, entries, strict=True) if n)
        struct.pack_into("<I", blob.types, pos + 8, sizes[sec])
        for i, (off, type_id, size) in enumerate(fixed):
            struct.pack_into("<III", blob.types, pos + 12 + 12 * i, type_id, off, size)
        return
    _fix_externs(blob, pos, entries)


def _fix_externs(blob: _Blob, pos: int, entries: list[tuple[int, int, int]]) -> None:
    """``.ksyms`` and other extern-only DATASECs (libbpf.c bpf_object__collect_externs): extern VARs
    become allocated ``int``s, extern FUNCs are listed through one dummy ``int`` VAR, each entry 4 bytes."""
    int_id = blob.int_type()
    dummy = 0
    for i, (type_id, _off, _size) in enumerate(entries):
        kind = blob.records[type_id - 1][1] if 0 < type_id <= len(blob.records) else -1
        if kind == BtfKind.BTF_KIND_VAR:
            var_pos = blob.records[type_id - 1][0]
            struct.pack_into("<I", blob.types, var_pos + 8, int_id)
            struct.pack_into("<I", blob.types, var_pos + 12, BTF_VAR_GLOBAL_ALLOCATED)
        else:
            if not dummy:
                dummy = blob.add_type(struct.pack("<IIII", blob.add_string(DUMMY_VAR),
                                                  int(BtfKind.BTF_KIND_VAR) << 24, int_id, BTF_VAR_GLOBAL_ALLOCATED))
            type_id = dummy
        struct.pack_into("<III", blob.types, pos + 12 + 12 * i, type_id, 4 * i, 4)
    struct.pack_into("<I", blob.types, pos + 8, 4 * len(entries))
