"""The object's ``.BTF`` made loadable by BPF_BTF_LOAD, as libbpf does before loading it
(libbpf.c btf_fixup_datasec, bpf_object__sanitize_btf):

- clang leaves each DATASEC's size and its variables' offsets 0: the size becomes the ELF section's,
  each offset its symbol's value, and the entries are sorted by offset (the kernel wants them ascending,
  kernel/bpf/btf.c btf_datasec_check_meta);
- extern FUNCs (kfunc declarations) get global linkage, which the kernel accepts (btf_func_check_meta);
- a DATASEC the kernel would refuse (``.ksyms`` listing functions, extern variables) becomes an
  anonymous-member STRUCT of the same record length, so no type id moves.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping

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
BTF_VAR_GLOBAL_EXTERN = 2


def fixup_btf(raw: bytes, section_sizes: Mapping[str, int], symbol_offsets: Mapping[str, int],
              source: str = "<bytes>") -> bytes:
    """A copy of *raw* with the fixes above. Raises ELFFormatError for a record running past the blob."""
    blob = bytearray(raw)
    _magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(blob)
    strings = bytes(blob[hdr_len + str_off : hdr_len + str_off + str_len])

    def name(off: int) -> str:
        end = strings.find(b"\0", off)
        return strings[off:end].decode(errors="replace") if 0 <= off < len(strings) and end >= 0 else ""

    pos, end = hdr_len + type_off, hdr_len + type_off + type_len
    records: list[tuple[int, int, int, int]] = []  # offset, kind, vlen, name_off
    while pos < end:
        if pos + 12 > end:
            raise ELFFormatError(source, ".BTF", f"type record at byte {pos} is truncated")
        name_off, info, _size = struct.unpack_from("<III", blob, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        fixed, per = _EXTRA.get(kind, (0, 0))  # type: ignore[call-overload]
        records.append((pos, kind, vlen, name_off))
        pos += 12 + fixed + per * vlen
    for pos, kind, vlen, name_off in records:
        if kind == BtfKind.BTF_KIND_FUNC and vlen == BTF_FUNC_EXTERN:
            info = struct.unpack_from("<I", blob, pos + 4)[0]
            struct.pack_into("<I", blob, pos + 4, (info & ~0xFFFF) | BTF_FUNC_GLOBAL)
        elif kind == BtfKind.BTF_KIND_DATASEC:
            _fix_datasec(blob, pos, vlen, name(name_off), records, name, section_sizes, symbol_offsets)
    return bytes(blob)


def _fix_datasec(blob: bytearray, pos: int, vlen: int, sec: str, records: list[tuple[int, int, int, int]],
                 name: Callable[[int], str], sizes: Mapping[str, int], offsets: Mapping[str, int]) -> None:
    entries = [struct.unpack_from("<III", blob, pos + 12 + 12 * i) for i in range(vlen)]

    def var_name(type_id: int) -> str | None:
        """The name of global variable *type_id*, None unless it is a defined VAR with a symbol."""
        if not 0 < type_id <= len(records):
            return None
        var_pos, kind, _vlen, name_off = records[type_id - 1]
        if kind != BtfKind.BTF_KIND_VAR or struct.unpack_from("<I", blob, var_pos + 12)[0] == BTF_VAR_GLOBAL_EXTERN:
            return None
        found = name(name_off)
        return found if found in offsets else None

    names = [var_name(type_id) for type_id, _, _ in entries]
    if sec not in sizes or any(n is None for n in names):
        _as_struct(blob, pos, vlen)
        return
    fixed = sorted((offsets[n], t, size) for n, (t, _, size) in zip(names, entries, strict=True) if n is not None)
    struct.pack_into("<I", blob, pos + 8, sizes[sec])
    for i, (off, type_id, size) in enumerate(fixed):
        struct.pack_into("<III", blob, pos + 12 + 12 * i, type_id, off, size)


def _as_struct(blob: bytearray, pos: int, vlen: int) -> None:
    """Rewrite the DATASEC at *pos* as a STRUCT of size 0 of the same length (struct btf_member and
    struct btf_var_secinfo are both 12 bytes): unnamed members of type ``int``-free id 0 at offset 0 would
    be refused, so each member keeps the entry's type id."""
    info = struct.unpack_from("<I", blob, pos + 4)[0]
    struct.pack_into("<II", blob, pos + 4, (int(BtfKind.BTF_KIND_STRUCT) << 24) | (info & 0xFFFF), 0)
    for i in range(vlen):
        type_id = struct.unpack_from("<I", blob, pos + 12 + 12 * i)[0]
        struct.pack_into("<III", blob, pos + 12 + 12 * i, 0, type_id, 0)
