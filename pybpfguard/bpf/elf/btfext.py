"""``.BTF.ext``: per-section func_info, line_info and CO-RE relocation records (tools/lib/bpf/libbpf_internal.h
``struct btf_ext_header``; the record layouts are ``struct bpf_func_info``, ``struct bpf_line_info`` and
``struct bpf_core_relo`` in include/uapi/linux/bpf.h).

Every ``insn_off`` here is in bytes from the start of its ELF section, as clang writes it; the loader
turns it into the instruction index of the final program. Strings (section names, file names, source
lines, CO-RE access strings) are offsets into the object's ``.BTF`` string table, resolved with *strings*.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from pybpfguard.bpf.elf.errors import BTFExtError

BTF_EXT_MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, func/line info off/len
_CORE = struct.Struct("<II")  # core_relo_off, core_relo_len (hdr_len >= 32)
_MIN_REC = {"func_info": 8, "line_info": 16, "core_relo": 16}


@dataclass(frozen=True, slots=True)
class FuncRecord:
    insn_off: int  # bytes in the section
    type_id: int  # a FUNC in the object's .BTF


@dataclass(frozen=True, slots=True)
class LineRecord:
    insn_off: int
    file_name_off: int
    line_off: int
    line_col: int  # line << 10 | column


@dataclass(frozen=True, slots=True)
class CoreRecord:
    insn_off: int
    type_id: int
    access: str  # "0:1:2": the access string
    kind: int  # enum bpf_core_relo_kind


@dataclass(slots=True)
class BTFExt:
    """Records by ELF section name."""

    func_info: dict[str, list[FuncRecord]] = field(default_factory=dict)
    line_info: dict[str, list[LineRecord]] = field(default_factory=dict)
    core_relos: dict[str, list[CoreRecord]] = field(default_factory=dict)


def parse_btf_ext(data: bytes, strings: Callable[[int], str], source: str = "<bytes>") -> BTFExt:
    """Parse *data* (the section's bytes). *strings* maps a .BTF string offset to its text and raises
    any BPFError/ValueError/IndexError for a bad offset. Raises BTFExtError naming what is wrong."""

    def fail(reason: str) -> BTFExtError:
        return BTFExtError(source, ".BTF.ext", reason)

    if len(data) < _HEADER.size:
        raise fail(f"{len(data)} bytes, shorter than the {_HEADER.size}-byte header")
    magic, version, _flags, hdr_len, fi_off, fi_len, li_off, li_len = _HEADER.unpack_from(data)
    if magic != BTF_EXT_MAGIC:
        raise fail(f"bad magic {magic:#06x}")
    if version != 1:
        raise fail(f"version {version}, expected 1")
    if hdr_len < _HEADER.size or hdr_len > len(data):
        raise fail(f"header length {hdr_len} outside {_HEADER.size}..{len(data)}")
    ext = BTFExt()
    body = data[hdr_len:]

    def name(off: int) -> str:
        try:
            return strings(off)
        except Exception as err:  # the reader's own error types vary; each means "bad offset"
            raise fail(f"string offset {off} is not in .BTF's string table ({err})") from None

    def blocks(what: str, off: int, length: int) -> list[tuple[str, list[tuple[int, ...]]]]:
        if not length:
            return []
        if off + length > len(body) or length < 4:
            raise fail(f"{what} ({off}+{length} bytes) runs past the section ({len(body)} bytes)")
        chunk = body[off : off + length]
        (rec_size,) = struct.unpack_from("<I", chunk)
        if rec_size < _MIN_REC[what] or rec_size % 4:
            raise fail(f"{what} record size {rec_size}, want at least {_MIN_REC[what]} and a multiple of 4")
        out: list[tuple[str, list[tuple[int, ...]]]] = []
        pos = 4
        while pos < len(chunk):
            if pos + 8 > len(chunk):
                raise fail(f"{what}: a truncated section header at byte {pos}")
            sec_off, count = struct.unpack_from("<II", chunk, pos)
            pos += 8
            if count == 0 or pos + count * rec_size > len(chunk):
                raise fail(f"{what} of {name(sec_off)!r}: {count} records of {rec_size} bytes do not fit")
            fmt = struct.Struct("<" + "I" * (_MIN_REC[what] // 4))
            recs = [fmt.unpack_from(chunk, pos + i * rec_size) for i in range(count)]
            pos += count * rec_size
            out.append((name(sec_off), recs))
        return out

    for sec, recs in blocks("func_info", fi_off, fi_len):
        ext.func_info.setdefault(sec, []).extend(FuncRecord(*r) for r in recs)
    for sec, recs in blocks("line_info", li_off, li_len):
        ext.line_info.setdefault(sec, []).extend(LineRecord(*r) for r in recs)
    if hdr_len >= _HEADER.size + _CORE.size:
        co_off, co_len = _CORE.unpack_from(data, _HEADER.size)
        for sec, recs in blocks("core_relo", co_off, co_len):
            ext.core_relos.setdefault(sec, []).extend(
                CoreRecord(off, type_id, name(access), kind) for off, type_id, access, kind in recs
            )
    return ext
