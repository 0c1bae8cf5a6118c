"""Struct member offsets from BTF: nested paths, anonymous structs/unions, arrays, bitfields.

A *path* is C's member designator without the base: ``"real_parent"``, ``"f_path.dentry"``,
``"thread.sp"``, ``"comm[3]"``. Members of anonymous structs and unions are found as C finds them (by their
own name, through any depth of anonymous nesting). Paths never follow pointers: a pointer member ends
the offset arithmetic, and a program loads it before going on.

Bitfields per Documentation/bpf/btf.rst 2.2.5: with the struct's kind_flag set, a member's ``offset`` is
``bitfield_size << 24 | bit_offset``; without it, a bitfield is a member of an INT type whose
``nr_bits``/``offset`` encode it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import msgspec

from pybpfguard.bpf.btf import types as t
from pybpfguard.bpf.btf.errors import BitfieldMemberError, MemberNotFoundError, TypeNotFoundError
from pybpfguard.bpf.btf.kinds import BtfKind

if TYPE_CHECKING:
    from pybpfguard.bpf.btf.spec import Spec

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$")
_INDEX = re.compile(r"\[(\d+)\]")


class MemberInfo(msgspec.Struct, frozen=True, gc=False):
    """Where a member lives inside ``type_name``.

    ``bit_offset`` is in bits from the start of the outermost type; ``bitfield_size`` is in bits (0: not
    a bitfield); ``type_id`` is the member's type; ``size`` is its byte size (of the underlying integer
    for a bitfield). ``offset`` is the byte offset (raises BitfieldMemberError for bitfields).
    """

    type_name: str
    path: str
    type_id: int
    bit_offset: int
    bitfield_size: int
    size: int

    @property
    def offset(self) -> int:
        if self.bitfield_size or self.bit_offset % 8:
            raise BitfieldMemberError(self.type_name, self.path, self.bit_offset, self.bitfield_size)
        return self.bit_offset // 8


def composite_by_name(spec: Spec, name: str) -> t.Struct:
    """The struct, else union, else typedef-to-struct/union named *name*. Raises TypeNotFoundError."""
    for kind in (BtfKind.BTF_KIND_STRUCT, BtfKind.BTF_KIND_UNION, BtfKind.BTF_KIND_TYPEDEF):
        ids = spec.find_ids(kind, name)
        if ids:
            typ = spec.resolve(ids[0])
            if isinstance(typ, t.Struct):
                return typ
    raise TypeNotFoundError("STRUCT/UNION", name)


def _find_in(spec: Spec, comp: t.Struct, name: str) -> tuple[t.Member, int] | None:
    """The member called *name* and its bit offset within *comp*, searching anonymous members depth first."""
    for m in comp.members:
        if m.name == name:
            return m, m.bit_offset
    for m in comp.members:
        if not m.name:
            inner = spec.resolve(m.type_id)
            if isinstance(inner, t.Struct):
                found = _find_in(spec, inner, name)
                if found is not None:
                    return found[0], m.bit_offset + found[1]
    return None


def member(spec: Spec, type_name: str, path: str) -> MemberInfo:
    """Locate *path* inside the struct/union *type_name*. Raises TypeNotFoundError for the type,
    MemberNotFoundError (saying where the path stopped) for the path."""
    comp: t.BtfType = composite_by_name(spec, type_name)
    bit_offset, type_id, bitfield_size, walked = 0, comp.id, 0, []
    for part in path.split("."):
        match = _PART.match(part)
        if match is None:
            raise MemberNotFoundError(type_name, path, f"{part!r} is not a member designator")
        if not isinstance(comp, t.Struct):
            where = ".".join(walked) or type_name
            if isinstance(comp, t.Ptr):
                problem = f"{where} is a pointer: offsets do not follow pointers, load it first"
            else:
                problem = f"{where} is {_describe(comp)}, not a struct or union"
            raise MemberNotFoundError(type_name, path, problem)
        found = _find_in(spec, comp, match[1])
        if found is None:
            raise MemberNotFoundError(type_name, path, f"{_describe(comp)} has no member {match[1]!r}")
        m, off = found
        walked.append(part)
        bit_offset += off
        type_id, bitfield_size = m.type_id, m.bitfield_size
        for index in map(int, _INDEX.findall(match[2])):
            arr = spec.resolve(type_id)
            if not isinstance(arr, t.Array):
                raise MemberNotFoundError(type_name, path, f"{'.'.join(walked)} is {_describe(arr)}, not an array")
            if index >= arr.nelems:
                raise MemberNotFoundError(type_name, path, f"index {index} past {arr.nelems} elements")
            type_id = arr.type_id
            bit_offset += 8 * index * spec.sizeof(type_id)
        comp = spec.resolve(type_id)
    target = spec.resolve(type_id)
    if not bitfield_size and isinstance(target, t.Int) and (target.bit_offset or target.nr_bits != 8 * target.size):
        bit_offset += target.bit_offset  # legacy (kind_flag 0) bitfield: the INT carries the bits
        bitfield_size = target.nr_bits
    return MemberInfo(type_name, path, type_id, bit_offset, bitfield_size, spec.sizeof(type_id))


def _describe(typ: t.BtfType) -> str:
    kind = typ.kind.name.removeprefix("BTF_KIND_").lower()
    return f"{kind} {typ.name}" if typ.name else f"anonymous {kind} (id {typ.id})"
