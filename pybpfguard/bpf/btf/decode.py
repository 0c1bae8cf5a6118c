"""Decode one BTF type record into its :mod:`~pybpfguard.bpf.btf.types` value.

Each decoder takes the type section as u32 words, the word index of the record, the type id and a
function mapping a string offset to its name. Layouts per Documentation/bpf/btf.rst section 2.2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pybpfguard.bpf.btf import types as t
from pybpfguard.bpf.btf.errors import BTFFormatError, UnknownKindError
from pybpfguard.bpf.btf.kinds import BtfFuncLinkage, BtfIntEncoding, BtfKind, BtfVarLinkage

NameOf = Callable[[int], str]
Words = Sequence[int]


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def _int(w: Words, i: int, tid: int, name: str, name_of: NameOf) -> t.BtfType:
    data = w[i + 3]
    return t.Int(tid, name, w[i + 2], BtfIntEncoding((data >> 24) & 0xF), (data >> 16) & 0xFF, data & 0xFF)


def _ref(cls: type[t._Ref]) -> Callable[[Words, int, int, str, NameOf], t.BtfType]:
    def decode(w: Words, i: int, tid: int, name: str, name_of: NameOf) -> t.BtfType:
        return cls(tid, name, w[i + 2])

    return decode


def _array(w: Words, i: int, tid: int, name: str, name_of: NameOf) -> t.BtfType:
    return t.Array(tid, name, w[i + 3], w[i + 4], w[i + 5])


def _composite(cls: type[t.Struct]) -> Callable[[Words, int, int, str, NameOf], t.BtfType]:
    def decode(w: Words, i: int, tid: int, name: str, name_of: NameOf) -> t.BtfType:
        info = w[i + 1]
        bitfields = bool(info >> 31)  # kind_flag: offset = bitfield_size << 24 | bit_offset
        members = []
        for m in range(i + 3, i + 3 + 3 * (info & 0xFFFF), 3):
            off = w[m + 2]
            if bitfields:
                members.append(t.Member(name_of(w[m]), w[m + 1], off & 0xFFFFFF, off >> 24))
            else:
                members.append(t.Member(name_of(w[m]), w[m + 1], off, 0))
        return cls(tid, name, w[i + 2], tuple(members))

    return decode


def _enum(w: Words, i: int, tid: int, name: str, name_of: NameOf) -> t.BtfType:
    info, size = w[i + 1], w[i + 2]
    signed = bool(info >> 31)
    conv = _s32 if signed else int
    values = tuple(t.EnumValue(name_of(w[e]), conv(w[e + 1])) for e in range(i + 3, i + 3 + 2 * (info & 0xFFFF), 2))
    return t.Enum(tid, name, size, signed, values, values_may_be_truncated=size > 4)


def _enum64(w: Words, i: int, tid: int, name: str, name_of: NameOf) -> t.BtfType:
    info, size = w[i + 1], w[i + 2]
    signed = bool(info >> 31)
    values = []
    for e in range(i + 3, i + 3 + 3 * (info & 0xFFFF), 3):
        v = w[e + 2] << 32 | w[e + 1]  # struct btf_enum64: name_off, val_lo32, val_hi32
        if signed and v >> 63:
            v -= 1 << 64
        values.append(t.EnumValue(name_of(w[e]), v))
    return t.Enum64(tid, name, size, signed, tuple(values))


def _fwd(w: Words, i: int, tid: int, name: str, name_of: NameOf) -> t.BtfType:
    return t.Fwd(tid, name, bool(w[i + 1] >> 31))


def _func(w: Words, i: int, tid: int, name: str, name_of: NameOf) -> t.BtfType:
    linkage = w[i + 1] & 0xFFFF
    try:
        return t.Func(tid, name, w[i + 2], BtfFuncLinkage(linkage))
    except ValueError as err:
        raise BTFFormatError(f"type id {tid} (FUNC {name})", f"unknown linkage {linkage}") from err


def _func_proto(w: Words, i: int, tid: int, name: str, name_of: NameOf) -> t.BtfType:
    params = [t.Param(name_of(w[p]), w[p + 1]) for p in range(i + 3, i + 3 + 2 * (w[i + 1] & 0xFFFF), 2)]
    variadic = bool(params) and params[-1].type_id == 0 and params[-1].name == ""
    if variadic:
        params.pop()
    return t.FuncProto(tid, name, w[i + 2], tuple(params), variadic)


def _var(w: Words, i: int, tid: int, name: str, name_of: NameOf) -> t.BtfType:
    linkage = w[i + 3]
    try:
        return t.Var(tid, name, w[i + 2], BtfVarLinkage(linkage))
    except ValueError as err:
        raise BTFFormatError(f"type id {tid} (VAR {name})", f"unknown linkage {linkage}") from err


def _datasec(w: Words, i: int, tid: int, name: str, name_of: NameOf) -> t.BtfType:
    secinfo = tuple(t.VarSecinfo(w[v], w[v + 1], w[v + 2]) for v in range(i + 3, i + 3 + 3 * (w[i + 1] & 0xFFFF), 3))
    return t.Datasec(tid, name, w[i + 2], secinfo)


def _float(w: Words, i: int, tid: int, name: str, name_of: NameOf) -> t.BtfType:
    return t.Float(tid, name, w[i + 2])


def _decl_tag(w: Words, i: int, tid: int, name: str, name_of: NameOf) -> t.BtfType:
    return t.DeclTag(tid, name, w[i + 2], _s32(w[i + 3]))


_DECODERS: dict[int, Callable[[Words, int, int, str, NameOf], t.BtfType]] = {
    BtfKind.BTF_KIND_INT: _int,
    BtfKind.BTF_KIND_PTR: _ref(t.Ptr),
    BtfKind.BTF_KIND_ARRAY: _array,
    BtfKind.BTF_KIND_STRUCT: _composite(t.Struct),
    BtfKind.BTF_KIND_UNION: _composite(t.Union),
    BtfKind.BTF_KIND_ENUM: _enum,
    BtfKind.BTF_KIND_FWD: _fwd,
    BtfKind.BTF_KIND_TYPEDEF: _ref(t.Typedef),
    BtfKind.BTF_KIND_VOLATILE: _ref(t.Volatile),
    BtfKind.BTF_KIND_CONST: _ref(t.Const),
    BtfKind.BTF_KIND_RESTRICT: _ref(t.Restrict),
    BtfKind.BTF_KIND_FUNC: _func,
    BtfKind.BTF_KIND_FUNC_PROTO: _func_proto,
    BtfKind.BTF_KIND_VAR: _var,
    BtfKind.BTF_KIND_DATASEC: _datasec,
    BtfKind.BTF_KIND_FLOAT: _float,
    BtfKind.BTF_KIND_DECL_TAG: _decl_tag,
    BtfKind.BTF_KIND_TYPE_TAG: _ref(t.TypeTag),
    BtfKind.BTF_KIND_ENUM64: _enum64,
}


def decode_type(words: Words, i: int, type_id: int, name_of: NameOf) -> t.BtfType:
    """Decode the record at word index *i* as type *type_id*. Raises UnknownKindError, BTFFormatError."""
    kind = (words[i + 1] >> 24) & 0x1F
    try:
        decoder = _DECODERS[kind]
    except KeyError:
        raise UnknownKindError(kind, type_id) from None
    return decoder(words, i, type_id, name_of(words[i]), name_of)
