"""Decoded BTF types: one frozen msgspec Struct per kind, referring to other types by id.

Layouts per Documentation/bpf/btf.rst section 2.2. Types never hold other type objects, only ids, so
decoding one type decodes nothing else (the reader stays lazy). ``id`` 0 is ``void``. Names are ``str``
("" for anonymous). Sizes are bytes, offsets of members are bits (as in BTF).
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from pybpfguard.bpf.btf.kinds import BtfFuncLinkage, BtfIntEncoding, BtfKind, BtfVarLinkage


class BtfType(msgspec.Struct, frozen=True, gc=False):
    """Base of every decoded type: its ``id`` in the (possibly split) BTF and its ``name``."""

    kind: ClassVar[BtfKind] = BtfKind.BTF_KIND_UNKN
    id: int
    name: str


class Void(BtfType):
    """Type id 0."""


class Int(BtfType):
    """BTF_KIND_INT: ``size`` bytes; ``nr_bits`` used bits starting at ``bit_offset`` (legacy bitfields)."""

    kind = BtfKind.BTF_KIND_INT
    size: int
    encoding: BtfIntEncoding
    bit_offset: int
    nr_bits: int

    @property
    def signed(self) -> bool:
        return bool(self.encoding & BtfIntEncoding.BTF_INT_SIGNED)


class _Ref(BtfType):
    """A kind whose only payload is the referenced ``type_id``."""

    type_id: int


class Ptr(_Ref):
    kind = BtfKind.BTF_KIND_PTR


class Typedef(_Ref):
    kind = BtfKind.BTF_KIND_TYPEDEF


class Volatile(_Ref):
    kind = BtfKind.BTF_KIND_VOLATILE


class Const(_Ref):
    kind = BtfKind.BTF_KIND_CONST


class Restrict(_Ref):
    kind = BtfKind.BTF_KIND_RESTRICT


class TypeTag(_Ref):
    """BTF_KIND_TYPE_TAG: an attribute (e.g. ``__user``, ``rcu``) on the pointee ``type_id``."""

    kind = BtfKind.BTF_KIND_TYPE_TAG


class Array(BtfType):
    """BTF_KIND_ARRAY (struct btf_array): ``nelems`` elements of ``type_id``."""

    kind = BtfKind.BTF_KIND_ARRAY
    type_id: int
    index_type_id: int
    nelems: int


class Member(msgspec.Struct, frozen=True, gc=False):
    """struct btf_member: ``bit_offset`` from the start of the enclosing struct/union, in bits;
    ``bitfield_size`` in bits, 0 when the member is not a bitfield (kind_flag encoding)."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int


class Struct(BtfType):
    """BTF_KIND_STRUCT: ``size`` bytes, ``members`` in declaration order."""

    kind = BtfKind.BTF_KIND_STRUCT
    size: int
    members: tuple[Member, ...]


class Union(Struct):
    kind = BtfKind.BTF_KIND_UNION


class EnumValue(msgspec.Struct, frozen=True, gc=False):
    name: str
    value: int


class Enum(BtfType):
    """BTF_KIND_ENUM (4-byte values, struct btf_enum) or BTF_KIND_ENUM64 (struct btf_enum64).

    ``signed`` comes from kind_flag. ``values_may_be_truncated`` is True for an ENUM of size 8: old
    pahole wrote 64-bit enums as ENUM with only the low 32 bits of each value (tests/program/test_program_load.py).
    """

    size: int
    signed: bool
    values: tuple[EnumValue, ...]
    values_may_be_truncated: bool = False
    kind: ClassVar[BtfKind] = BtfKind.BTF_KIND_ENUM


class Enum64(Enum):
    kind = BtfKind.BTF_KIND_ENUM64


class Fwd(BtfType):
    """BTF_KIND_FWD: a forward declaration; ``is_union`` from kind_flag."""

    kind = BtfKind.BTF_KIND_FWD
    is_union: bool


class Func(BtfType):
    """BTF_KIND_FUNC: ``type_id`` is its FUNC_PROTO. Its id is the ``attach_btf_id`` of fentry/LSM."""

    kind = BtfKind.BTF_KIND_FUNC
    type_id: int
    linkage: BtfFuncLinkage


class Param(msgspec.Struct, frozen=True, gc=False):
    name: str
    type_id: int


class FuncProto(BtfType):
    """BTF_KIND_FUNC_PROTO: ``return_type_id`` (0: void) and ``params``; a last param with name "" and
    type 0 means ``...``, reported as ``variadic`` and left out of ``params``."""

    kind = BtfKind.BTF_KIND_FUNC_PROTO
    return_type_id: int
    params: tuple[Param, ...]
    variadic: bool


class Var(BtfType):
    """BTF_KIND_VAR (struct btf_var)."""

    kind = BtfKind.BTF_KIND_VAR
    type_id: int
    linkage: BtfVarLinkage


class VarSecinfo(msgspec.Struct, frozen=True, gc=False):
    """struct btf_var_secinfo: ``offset`` and ``size`` in bytes within the section."""

    type_id: int
    offset: int
    size: int


class Datasec(BtfType):
    kind = BtfKind.BTF_KIND_DATASEC
    size: int
    vars: tuple[VarSecinfo, ...]


class Float(BtfType):
    kind = BtfKind.BTF_KIND_FLOAT
    size: int


class DeclTag(BtfType):
    """BTF_KIND_DECL_TAG (struct btf_decl_tag): ``component_idx`` -1 tags ``type_id`` itself, otherwise
    its member or parameter of that index."""

    kind = BtfKind.BTF_KIND_DECL_TAG
    type_id: int
    component_idx: int


MODIFIERS = (Typedef, Volatile, Const, Restrict, TypeTag)
"""Kinds that only qualify or rename another type: skipped when resolving to the underlying type."""
