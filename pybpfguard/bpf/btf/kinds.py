"""BTF wire constants: header, kinds, record sizes, int encodings, linkage.

Source: include/uapi/linux/btf.h and Documentation/bpf/btf.rst (Linux 6.18). A BTF blob is
``struct btf_header`` followed by a type section and a string section whose offsets are relative to
the end of the header. Each type is a 12-byte ``struct btf_type`` (``u32 name_off; u32 info;
u32 size_or_type``) followed by kind-specific data.
"""

from __future__ import annotations

import enum
import struct

from pybpfguard.bpf.errors import InvalidArgumentError

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
# struct btf_header: u16 magic, u8 version, u8 flags, u32 hdr_len, u32 type_off, u32 type_len,
# u32 str_off, u32 str_len.
BTF_HEADER = struct.Struct("<HBBIIIII")
BTF_TYPE_SIZE = 12  # sizeof(struct btf_type)
BTF_MAX_VLEN = 0xFFFF
BTF_MAX_NAME_OFFSET = 0xFFFFFF


class BtfKind(enum.IntEnum):
    """include/uapi/linux/btf.h: BTF_KIND_* (bits 24-28 of ``btf_type.info``)."""

    BTF_KIND_UNKN = 0  # only type id 0, "void"; never a record
    BTF_KIND_INT = 1
    BTF_KIND_PTR = 2
    BTF_KIND_ARRAY = 3
    BTF_KIND_STRUCT = 4
    BTF_KIND_UNION = 5
    BTF_KIND_ENUM = 6
    BTF_KIND_FWD = 7
    BTF_KIND_TYPEDEF = 8
    BTF_KIND_VOLATILE = 9
    BTF_KIND_CONST = 10
    BTF_KIND_RESTRICT = 11
    BTF_KIND_FUNC = 12
    BTF_KIND_FUNC_PROTO = 13
    BTF_KIND_VAR = 14
    BTF_KIND_DATASEC = 15
    BTF_KIND_FLOAT = 16
    BTF_KIND_DECL_TAG = 17
    BTF_KIND_TYPE_TAG = 18
    BTF_KIND_ENUM64 = 19


# Words (u32) after the 12-byte btf_type header: fixed part, and per vlen entry. From btf.rst section 2.2:
# INT u32 encoding; ARRAY struct btf_array (3 u32); STRUCT/UNION btf_member (3 u32 each); ENUM btf_enum
# (2 u32 each); FUNC_PROTO btf_param (2 u32 each); VAR struct btf_var (1 u32); DATASEC btf_var_secinfo
# (3 u32 each); DECL_TAG struct btf_decl_tag (1 u32); ENUM64 btf_enum64 (3 u32 each).
EXTRA_WORDS: dict[BtfKind, tuple[int, int]] = {
    BtfKind.BTF_KIND_INT: (1, 0),
    BtfKind.BTF_KIND_PTR: (0, 0),
    BtfKind.BTF_KIND_ARRAY: (3, 0),
    BtfKind.BTF_KIND_STRUCT: (0, 3),
    BtfKind.BTF_KIND_UNION: (0, 3),
    BtfKind.BTF_KIND_ENUM: (0, 2),
    BtfKind.BTF_KIND_FWD: (0, 0),
    BtfKind.BTF_KIND_TYPEDEF: (0, 0),
    BtfKind.BTF_KIND_VOLATILE: (0, 0),
    BtfKind.BTF_KIND_CONST: (0, 0),
    BtfKind.BTF_KIND_RESTRICT: (0, 0),
    BtfKind.BTF_KIND_FUNC: (0, 0),
    BtfKind.BTF_KIND_FUNC_PROTO: (0, 2),
    BtfKind.BTF_KIND_VAR: (1, 0),
    BtfKind.BTF_KIND_DATASEC: (0, 3),
    BtfKind.BTF_KIND_FLOAT: (0, 0),
    BtfKind.BTF_KIND_DECL_TAG: (1, 0),
    BtfKind.BTF_KIND_TYPE_TAG: (0, 0),
    BtfKind.BTF_KIND_ENUM64: (0, 3),
}


def btf_info(kind: BtfKind, vlen: int = 0, kind_flag: bool = False) -> int:
    """``btf_type.info``: bits 0-15 vlen, bits 24-28 kind, bit 31 kind_flag (BTF_INFO_ENC in btf.rst)."""
    if not 0 <= vlen <= BTF_MAX_VLEN:
        raise InvalidArgumentError(f"vlen {vlen} out of range 0..{BTF_MAX_VLEN}")
    return (int(kind_flag) << 31) | (int(kind) << 24) | vlen


class BtfIntEncoding(enum.IntFlag):
    """include/uapi/linux/btf.h: BTF_INT_ENCODING bits (bits 24-27 of the INT's extra u32)."""

    BTF_INT_SIGNED = 1 << 0
    BTF_INT_CHAR = 1 << 1
    BTF_INT_BOOL = 1 << 2


def btf_int_data(encoding: BtfIntEncoding, bits: int, offset: int = 0) -> int:
    """The INT's extra u32: encoding bits 24-27, offset bits 16-23, nr_bits bits 0-7 (BTF_INT_* in btf.h)."""
    if not 0 < bits <= 128 or not 0 <= offset < 256:
        raise InvalidArgumentError(f"int bits {bits} / offset {offset} out of range (1..128 / 0..255)")
    return (int(encoding) << 24) | (offset << 16) | bits


class BtfFuncLinkage(enum.IntEnum):
    """include/uapi/linux/btf.h: enum btf_func_linkage (the FUNC's vlen)."""

    BTF_FUNC_STATIC = 0
    BTF_FUNC_GLOBAL = 1
    BTF_FUNC_EXTERN = 2


class BtfVarLinkage(enum.IntEnum):
    """include/uapi/linux/btf.h: BTF_VAR_* (``struct btf_var.linkage``)."""

    BTF_VAR_STATIC = 0
    BTF_VAR_GLOBAL_ALLOCATED = 1
    BTF_VAR_GLOBAL_EXTERN = 2
