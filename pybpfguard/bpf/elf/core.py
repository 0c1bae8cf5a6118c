"""CO-RE: resolve a clang object's ``.BTF.ext`` core relocations against the running kernel's BTF.

Source: Documentation/bpf/llvm_reloc.rst (section "CO-RE Relocations"), ``enum bpf_core_relo_kind`` and
``struct bpf_core_relo`` in include/uapi/linux/bpf.h, and the semantics of libbpf's relo_core.c, which
this module reproduces so an object behaves as it does under libbpf:

- An *access string* ``"0:1:2"`` walks the object's (local) BTF from the relocation's root type: the
  first number indexes the root as an array (``p[0]``), each further one picks a member of a
  struct/union (anonymous ones included) or an element of an array.
- *Candidates* are the target types of the root's kind whose name equals the root's name with a
  flavour suffix (``task_struct___v2`` -> ``task_struct``) stripped. Each named member of the local
  path is looked up by name in the candidate (through anonymous structs/unions), array indexes are
  kept, and member types must be compatible (both composite, both pointers, ints without bit offset,
  enums or forwards of the same essential name, arrays of compatible elements).
- Candidates that fail a relocation are dropped for every later relocation of the same root type; all
  surviving candidates must agree on the result, otherwise the relocation is ambiguous (an error).
- With no candidate, ``FIELD_EXISTS``/``ENUMVAL_EXISTS`` give 0 and the type-based kinds give 0; every
  other kind *poisons* the instruction: it becomes ``call 195896080`` (helper id 0xbad2310, two such
  slots for an ld_imm64), which the verifier reports only if that code is reachable.

Patching: the imm of an ALU/ALU64 instruction with an immediate source, the off of LDX/ST/STX (whose
access size follows the field when its size changed and the field is a pointer or an unsigned int;
otherwise the instruction is poisoned, as libbpf does), the 64-bit value of an ld_imm64. Before
patching, the value clang put in the instruction must equal what the local BTF gives (except for
bitfields), which catches a relocation that does not belong to its instruction.

Limits: target candidates are looked up by the exact essential name, so a kernel type that itself
carries a flavour suffix is not a candidate (libbpf would consider it); kernel module BTF is searched
only when *target* is a module's split Spec.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from pybpfguard.bpf.asm import opcodes as op
from pybpfguard.bpf.asm.insn import Insn, imm32
from pybpfguard.bpf.btf import types as t
from pybpfguard.bpf.btf.errors import BTFError
from pybpfguard.bpf.btf.kinds import BtfIntEncoding, BtfKind
from pybpfguard.bpf.btf.spec import Spec
from pybpfguard.bpf.errors import BPFError

POISON_HELPER_ID = 0xBAD2310
"""The helper id a poisoned instruction calls (195896080, "bad relo"); the verifier names it if reached."""

_MAX_ACCESS = 64  # BPF_CORE_SPEC_MAX_LEN in libbpf: the deepest access string accepted
_MAX_DEPTH = 32  # recursion limit of the type compatibility checks (libbpf's as well)
_SHRT_MAX = 0x7FFF


class CoreReloKind(enum.IntEnum):
    """include/uapi/linux/bpf.h: enum bpf_core_relo_kind."""

    BPF_CORE_FIELD_BYTE_OFFSET = 0
    BPF_CORE_FIELD_BYTE_SIZE = 1
    BPF_CORE_FIELD_EXISTS = 2
    BPF_CORE_FIELD_SIGNED = 3
    BPF_CORE_FIELD_LSHIFT_U64 = 4
    BPF_CORE_FIELD_RSHIFT_U64 = 5
    BPF_CORE_TYPE_ID_LOCAL = 6
    BPF_CORE_TYPE_ID_TARGET = 7
    BPF_CORE_TYPE_EXISTS = 8
    BPF_CORE_TYPE_SIZE = 9
    BPF_CORE_ENUMVAL_EXISTS = 10
    BPF_CORE_ENUMVAL_VALUE = 11
    BPF_CORE_TYPE_MATCHES = 12

    @property
    def label(self) -> str:
        """``"field byte offset"``, ``"type size"``, ... for messages."""
        return self.name.removeprefix("BPF_CORE_").replace("_", " ").lower()


_K = CoreReloKind
_FIELD_KINDS = frozenset(range(_K.BPF_CORE_FIELD_BYTE_OFFSET, _K.BPF_CORE_FIELD_RSHIFT_U64 + 1))
_ENUMVAL_KINDS = frozenset((_K.BPF_CORE_ENUMVAL_EXISTS, _K.BPF_CORE_ENUMVAL_VALUE))
_ALL_KINDS = frozenset(CoreReloKind)


class CoreRelo(NamedTuple):
    """One ``struct bpf_core_relo`` of a program.

    ``insn_index``: slot index (8-byte units) of the instruction in the program; ``type_id``: the root
    type in the object's (local) BTF; ``access``: the access string (``"0:1:2"``); ``kind``: a
    :class:`CoreReloKind` value.
    """

    insn_index: int
    type_id: int
    access: str
    kind: int


class CoreReloError(BPFError):
    """A CO-RE relocation that cannot be applied (malformed, ambiguous, or not matching its instruction).

    Attributes: ``kind`` (:class:`CoreReloKind`, or the raw int when unknown), ``what`` (the local type and
    field path in C terms: ``task_struct___v2.real_parent``, ``enum pid_type::PIDTYPE_TGID``), ``insn_index``
    (slot index in the program), ``problem``, ``source_line`` (the C line from ``.BTF.ext`` line_info when
    the caller knows it, e.g. ``"prog.c:42: u64 ppid = BPF_CORE_READ(t, real_parent, tgid);"``, else "").
    """

    def __init__(self, kind: int, what: str, insn_index: int, problem: str, source_line: str = "") -> None:
        super().__init__(kind, what, insn_index, problem, source_line)
        self.kind = _kind_or_int(kind)
        self.what = what
        self.insn_index = insn_index
        self.problem = problem
        self.source_line = source_line

    def __str__(self) -> str:
        kind = self.kind.label if isinstance(self.kind, CoreReloKind) else f"kind {self.kind}"
        text = f"CO-RE {kind} relocation of {self.what} at insn {self.insn_index}: {self.problem}"
        return f"{text} ({self.source_line})" if self.source_line else text

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (int(self.kind), self.what, self.insn_index, self.problem, self.source_line))


def _kind_or_int(kind: int) -> CoreReloKind | int:
    try:
        return CoreReloKind(kind)
    except ValueError:
        return kind


class _Problem(Exception):
    """Internal: why a relocation fails; turned into CoreReloError with the relocation's names."""


# -- access specs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Acc:
    """One step of a spec: a named member (``type_id`` is the struct/union holding it, ``idx`` the member),
    an array element (``name`` None, ``type_id`` the element type), or an enumerator (``type_id`` the enum)."""

    type_id: int
    idx: int
    name: str | None


@dataclass(slots=True)
class _Spec:
    """A resolved access path in one BTF: named steps (``accs``), every raw index, offset in bits."""

    btf: Spec
    root_id: int
    accs: list[_Acc] = field(default_factory=list)
    bit_offset: int = 0


def _resolve(btf: Spec, type_id: int) -> tuple[int, t.BtfType]:
    """Skip typedefs and modifiers: ``(id, type)`` of the underlying type (libbpf skip_mods_and_typedefs)."""
    typ = btf.type_by_id(type_id)
    for _ in range(_MAX_DEPTH * 2):
        if not isinstance(typ, t.MODIFIERS):
            return type_id, typ
        type_id = typ.type_id
        typ = btf.type_by_id(type_id)
    raise _Problem(f"type id {type_id}: modifier chain too long")


def _sizeof(btf: Spec, type_id: int) -> int:
    try:
        return btf.sizeof(type_id)
    except BTFError as err:
        raise _Problem(str(err)) from None


def _is_composite(typ: t.BtfType) -> bool:
    return isinstance(typ, t.Struct)  # Union derives from Struct


def _is_flex(btf: Spec, prev: _Acc | None, arr: t.Array) -> bool:
    """A zero-length array that is the last member of its struct (C flexible array member)."""
    if prev is None or prev.name is None or arr.nelems > 0:
        return False
    holder = btf.type_by_id(prev.type_id)
    return isinstance(holder, t.Struct) and prev.idx == len(holder.members) - 1


def _parse(btf: Spec, relo: CoreRelo) -> _Spec:
    """The local spec of *relo* (libbpf bpf_core_parse_spec). Raises _Problem."""
    try:
        raw = [int(part) for part in relo.access.split(":")]
    except ValueError:
        raise _Problem(f"access string {relo.access!r} is not colon-separated numbers") from None
    if not raw or len(raw) > _MAX_ACCESS or min(raw) < 0:
        raise _Problem(f"access string {relo.access!r} is empty, negative or deeper than {_MAX_ACCESS}")
    spec = _Spec(btf, relo.type_id)
    if relo.kind not in _FIELD_KINDS and relo.kind not in _ENUMVAL_KINDS:
        if raw != [0]:
            raise _Problem(f"a type relocation's access string must be '0', not {relo.access!r}")
        return spec
    type_id, typ = _resolve(btf, relo.type_id)
    if relo.kind in _ENUMVAL_KINDS:
        if not isinstance(typ, t.Enum) or len(raw) != 1 or raw[0] >= len(typ.values):
            raise _Problem(f"access {relo.access!r} is not an enumerator of type id {relo.type_id}")
        spec.accs.append(_Acc(type_id, raw[0], typ.values[raw[0]].name))
        return spec
    spec.accs.append(_Acc(type_id, raw[0], None))
    spec.bit_offset = raw[0] * _sizeof(btf, type_id) * 8
    for index in raw[1:]:
        type_id, typ = _resolve(btf, type_id)
        if isinstance(typ, t.Struct):
            if index >= len(typ.members):
                raise _Problem(f"member index {index} past the {len(typ.members)} members of {_c_name(typ)}")
            m = typ.members[index]
            spec.bit_offset += m.bit_offset
            if m.name:
                spec.accs.append(_Acc(type_id, index, m.name))
            type_id = m.type_id
        elif isinstance(typ, t.Array):
            flex = _is_flex(btf, spec.accs[-1], typ)
            if not flex and index >= typ.nelems:
                raise _Problem(f"index {index} past the {typ.nelems} elements of the array")
            type_id, _ = _resolve(btf, typ.type_id)
            spec.accs.append(_Acc(type_id, index, None))
            spec.bit_offset += index * _sizeof(btf, type_id) * 8
        else:
            raise _Problem(f"access {relo.access!r} goes through {_c_name(typ)}, neither struct, union nor array")
    return spec


def _c_name(typ: t.BtfType) -> str:
    if isinstance(typ, t.Union):
        return f"union {typ.name}" if typ.name else "an anonymous union"
    if isinstance(typ, t.Struct):
        return f"struct {typ.name}" if typ.name else "an anonymous struct"
    if isinstance(typ, t.Enum):
        return f"enum {typ.name}" if typ.name else "an anonymous enum"
    kind = typ.kind.name.removeprefix("BTF_KIND_").lower()
    return f"{kind} {typ.name}" if typ.name else kind


def describe(relo: CoreRelo, local: Spec) -> str:
    """*relo*'s target in C terms, from the local BTF: ``task_struct___v2.real_parent``, ``pids[1].pid``
    on an array root, ``enum pid_type::PIDTYPE_TGID``, or the type name for type-based kinds. Falls back
    to the type id and raw access string when they do not parse."""
    try:
        root = local.type_by_id(relo.type_id)
        spec = _parse(local, relo)
    except (BTFError, _Problem):
        return f"type id {relo.type_id} access {relo.access!r}"
    name = root.name or _c_name(root)
    if relo.kind in _ENUMVAL_KINDS:
        return f"enum {name}::{spec.accs[0].name}"
    if relo.kind not in _FIELD_KINDS:
        return name
    text = name + (f"[{spec.accs[0].idx}]" if spec.accs[0].idx else "")
    for acc in spec.accs[1:]:
        text += f".{acc.name}" if acc.name is not None else f"[{acc.idx}]"
    return text


# -- candidates and matching ------------------------------------------------------------------------


def essential_name(name: str) -> str:
    """*name* without its flavour: ``task_struct___v2`` -> ``task_struct`` (the last ``X___Y`` separator,
    X and Y not underscores; libbpf bpf_core_essential_name_len)."""
    for i in range(len(name) - 5, -1, -1):
        if name[i] != "_" and name[i + 1 : i + 4] == "___" and name[i + 4] != "_":
            return name[: i + 1]
    return name


def _candidates(local: Spec, root_id: int, target: Spec) -> list[int]:
    """Target type ids of the local root's kind (ENUM and ENUM64 alike) and essential name."""
    root = local.type_by_id(root_id)
    if not root.name:
        raise _Problem(f"the root type id {root_id} is anonymous: no kernel type can be found by name")
    kinds = [root.kind]
    if isinstance(root, t.Enum):
        kinds = [BtfKind.BTF_KIND_ENUM, BtfKind.BTF_KIND_ENUM64]
    name = essential_name(root.name)
    return sorted(i for kind in kinds for i in target.find_ids(kind, name))


def _same_kind(a: t.BtfType, b: t.BtfType) -> bool:
    return a.kind == b.kind or (isinstance(a, t.Enum) and isinstance(b, t.Enum))


def _fields_compat(lbtf: Spec, lid: int, tbtf: Spec, tid: int, depth: int = 0) -> bool:
    """libbpf bpf_core_fields_are_compat: may a local member's type be read as the target member's?"""
    _, lt = _resolve(lbtf, lid)
    _, tt = _resolve(tbtf, tid)
    if _is_composite(lt) and _is_composite(tt):
        return True
    if not _same_kind(lt, tt) or depth > _MAX_DEPTH:
        return False
    if isinstance(lt, (t.Ptr, t.Float)):
        return True
    if isinstance(lt, (t.Fwd, t.Enum)):
        return not lt.name or not tt.name or essential_name(lt.name) == essential_name(tt.name)
    if isinstance(lt, t.Int):
        assert isinstance(tt, t.Int)
        return lt.bit_offset == 0 and tt.bit_offset == 0
    if isinstance(lt, t.Array):
        assert isinstance(tt, t.Array)
        return _fields_compat(lbtf, lt.type_id, tbtf, tt.type_id, depth + 1)
    return False


def _types_compat(lbtf: Spec, lid: int, tbtf: Spec, tid: int, depth: int = 0) -> bool:
    """libbpf bpf_core_types_are_compat: kinds agree; names were matched by the candidate search, so
    composites, enums and forwards agree; ints without bit offset; pointers, arrays and function
    prototypes by their parts; other kinds (floats included) never."""
    _, lt = _resolve(lbtf, lid)
    _, tt = _resolve(tbtf, tid)
    if not _same_kind(lt, tt) or depth > _MAX_DEPTH:
        return False
    if isinstance(lt, (t.Void, t.Struct, t.Enum, t.Fwd)):
        return True
    if isinstance(lt, t.Int):
        assert isinstance(tt, t.Int)
        return lt.bit_offset == 0 and tt.bit_offset == 0
    if isinstance(lt, (t.Ptr, t.Array)):
        assert isinstance(tt, (t.Ptr, t.Array))
        return _types_compat(lbtf, lt.type_id, tbtf, tt.type_id, depth + 1)
    if isinstance(lt, t.FuncProto):
        assert isinstance(tt, t.FuncProto)
        if len(lt.params) != len(tt.params) or lt.variadic != tt.variadic:
            return False
        pairs = [(lt.return_type_id, tt.return_type_id)] + [
            (a.type_id, b.type_id) for a, b in zip(lt.params, tt.params, strict=True)
        ]
        return all(_types_compat(lbtf, a, tbtf, b, depth + 1) for a, b in pairs)
    return False


def _names_match(local_name: str, target_name: str) -> bool:
    """Equal essential names; an anonymous target matches only an anonymous local."""
    if not target_name:
        return not local_name
    return essential_name(local_name) == essential_name(target_name)


def _types_match(lbtf: Spec, lid: int, tbtf: Spec, tid: int, behind_ptr: bool = False, depth: int = 0) -> bool:
    """libbpf bpf_core_types_match (TYPE_MATCHES), stricter than compatibility: names match at every
    level; ints agree in size and signedness; arrays in length; enums in size, and every local enumerator
    exists by name in the target; every member of a local struct/union has a member of its name and a
    matching type in the target, except behind a pointer, where a struct/union and a forward
    declaration of the same kind match; function prototypes by their parameters and return type."""
    _, lt = _resolve(lbtf, lid)
    _, tt = _resolve(tbtf, tid)
    if depth > _MAX_DEPTH or not _names_match(lt.name, tt.name):
        return False
    if isinstance(lt, t.Fwd):
        if isinstance(tt, t.Fwd):
            return lt.is_union == tt.is_union
        return behind_ptr and isinstance(tt, t.Struct) and isinstance(tt, t.Union) == lt.is_union
    if isinstance(lt, t.Enum):
        if not isinstance(tt, t.Enum) or lt.size != tt.size:
            return False
        return all(any(_names_match(v.name, w.name) for w in tt.values) for v in lt.values)
    if isinstance(lt, t.Struct):
        if behind_ptr and isinstance(tt, t.Fwd):
            return tt.is_union == isinstance(lt, t.Union)
        if lt.kind != tt.kind or not isinstance(tt, t.Struct):
            return False
        if behind_ptr:
            return True
        return all(
            any(
                _names_match(m.name, n.name) and _types_match(lbtf, m.type_id, tbtf, n.type_id, False, depth + 1)
                for n in tt.members
            )
            for m in lt.members
        )
    if lt.kind != tt.kind:
        return False
    if isinstance(lt, t.Void):
        return True
    if isinstance(lt, t.Int):
        assert isinstance(tt, t.Int)
        return lt.size == tt.size and lt.signed == tt.signed
    if isinstance(lt, t.Ptr):
        assert isinstance(tt, t.Ptr)
        return _types_match(lbtf, lt.type_id, tbtf, tt.type_id, True, depth + 1)
    if isinstance(lt, t.Array):
        assert isinstance(tt, t.Array)
        return lt.nelems == tt.nelems and _types_match(lbtf, lt.type_id, tbtf, tt.type_id, behind_ptr, depth + 1)
    if isinstance(lt, t.FuncProto):
        assert isinstance(tt, t.FuncProto)
        if len(lt.params) != len(tt.params) or lt.variadic != tt.variadic:
            return False
        pairs = [(lt.return_type_id, tt.return_type_id)] + [
            (a.type_id, b.type_id) for a, b in zip(lt.params, tt.params, strict=True)
        ]
        return all(_types_match(lbtf, a, tbtf, b, behind_ptr, depth + 1) for a, b in pairs)
    return False


def _match_member(lbtf: Spec, lacc: _Acc, tbtf: Spec, tid: int, spec: _Spec, depth: int = 0) -> int | None:
    """Find the local member *lacc* by name in target composite *tid*, descending into anonymous members;
    on success append the named step to *spec*, add its bit offset and return the member's type id."""
    lholder = lbtf.type_by_id(lacc.type_id)
    assert isinstance(lholder, t.Struct)
    lmember = lholder.members[lacc.idx]
    tid, tt = _resolve(tbtf, tid)
    if not isinstance(tt, t.Struct) or depth > _MAX_ACCESS:
        return None
    for i, m in enumerate(tt.members):
        if not m.name:
            spec.bit_offset += m.bit_offset
            found = _match_member(lbtf, lacc, tbtf, m.type_id, spec, depth + 1)
            if found is not None:
                return found
            spec.bit_offset -= m.bit_offset
        elif m.name == lmember.name:
            if not _fields_compat(lbtf, lmember.type_id, tbtf, m.type_id):
                return None
            spec.bit_offset += m.bit_offset
            spec.accs.append(_Acc(tid, i, m.name))
            return m.type_id
    return None


def _match(local: _Spec, kind: int, tbtf: Spec, cand: int) -> _Spec | None:
    """The target spec of *local* in candidate *cand*, or None when it does not match
    (libbpf bpf_core_spec_match)."""
    spec = _Spec(tbtf, cand)
    if kind == _K.BPF_CORE_TYPE_MATCHES:
        return spec if _types_match(local.btf, local.root_id, tbtf, cand) else None
    if kind not in _FIELD_KINDS and kind not in _ENUMVAL_KINDS:
        return spec if _types_compat(local.btf, local.root_id, tbtf, cand) else None
    if kind in _ENUMVAL_KINDS:
        tid, tt = _resolve(tbtf, cand)
        if not isinstance(tt, t.Enum):
            return None
        want = essential_name(local.accs[0].name or "")
        for i, v in enumerate(tt.values):
            if essential_name(v.name) == want:
                spec.accs.append(_Acc(tid, i, v.name))
                return spec
        return None
    tid = cand
    for i, lacc in enumerate(local.accs):
        tid, tt = _resolve(tbtf, tid)
        if lacc.name is not None:
            found = _match_member(local.btf, lacc, tbtf, tid, spec)
            if found is None:
                return None
            tid = found
            continue
        if i > 0:
            if not isinstance(tt, t.Array):
                return None
            if not _is_flex(tbtf, spec.accs[-1], tt) and lacc.idx >= tt.nelems:
                return None
            tid, _ = _resolve(tbtf, tt.type_id)
        spec.accs.append(_Acc(tid, lacc.idx, None))
        spec.bit_offset += lacc.idx * _sizeof(tbtf, tid) * 8
    return spec


# -- values ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Res:
    """A relocation's outcome: the value clang assumed (``orig``) and the kernel's (``new``), the field
    sizes behind a byte-offset relocation (0: not applicable), and whether to check/poison."""

    orig: int
    new: int
    poison: bool = False
    validate: bool = True
    orig_sz: int = 0
    new_sz: int = 0
    memsz_ok: bool = True


class _Poison(Exception):
    """Internal: the relocation has no value in the target (libbpf's -EUCLEAN)."""


@dataclass(frozen=True, slots=True)
class _Val:
    value: int
    size: int = 0  # field byte size for a non-bitfield byte-offset relocation (load/store width)
    type_id: int = 0
    validate: bool = True


def _field_value(kind: int, spec: _Spec | None) -> _Val:
    """libbpf bpf_core_calc_field_relo. Raises _Poison when *spec* is None (except FIELD_EXISTS)."""
    if kind == _K.BPF_CORE_FIELD_EXISTS:
        return _Val(int(spec is not None))
    if spec is None:
        raise _Poison
    btf, acc = spec.btf, spec.accs[-1]
    if acc.name is None:  # the path ends at an array element or the root itself
        size = _sizeof(btf, acc.type_id)
        if kind == _K.BPF_CORE_FIELD_BYTE_OFFSET:
            return _Val(spec.bit_offset // 8, size, acc.type_id)
        if kind == _K.BPF_CORE_FIELD_BYTE_SIZE:
            return _Val(size)
        raise _Problem("this kind cannot be applied to an array element")
    holder = btf.type_by_id(acc.type_id)
    assert isinstance(holder, t.Struct)
    m = holder.members[acc.idx]
    field_id, mt = _resolve(btf, m.type_id)
    bit_off, bit_sz = spec.bit_offset, m.bitfield_size
    if bit_sz:
        byte_sz = _sizeof(btf, field_id)
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:  # the smallest load holding every bit
            if byte_sz >= 8:
                raise _Problem("the bitfield cannot be read with one 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = _sizeof(btf, field_id)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    exact = not m.bitfield_size  # bitfield values are the compiler's choice: not validated
    if kind == _K.BPF_CORE_FIELD_BYTE_OFFSET:
        return _Val(byte_off, 0 if m.bitfield_size else byte_sz, 0 if m.bitfield_size else field_id, exact)
    if kind == _K.BPF_CORE_FIELD_BYTE_SIZE:
        return _Val(byte_sz, validate=exact)
    if kind == _K.BPF_CORE_FIELD_SIGNED:
        signed = (isinstance(mt, t.Enum) and mt.signed) or (
            isinstance(mt, t.Int) and bool(mt.encoding & BtfIntEncoding.BTF_INT_SIGNED)
        )
        return _Val(int(signed))
    if kind == _K.BPF_CORE_FIELD_LSHIFT_U64:  # little-endian: shift the field's top bit to bit 63
        return _Val(64 - (bit_off + bit_sz - byte_off * 8), validate=exact)
    return _Val(64 - bit_sz)  # BPF_CORE_FIELD_RSHIFT_U64


def _type_value(kind: int, spec: _Spec | None) -> _Val:
    """libbpf bpf_core_calc_type_relo: every type-based kind is 0 without a target type."""
    if spec is None:
        return _Val(0)
    if kind == _K.BPF_CORE_TYPE_ID_TARGET:  # ids in an object change when its BTF is rewritten: not checked
        return _Val(spec.root_id, validate=False)
    if kind in (_K.BPF_CORE_TYPE_EXISTS, _K.BPF_CORE_TYPE_MATCHES):
        return _Val(1)
    if kind == _K.BPF_CORE_TYPE_SIZE:
        return _Val(_sizeof(spec.btf, spec.root_id))
    raise _Problem("unknown relocation kind")


def _enum_value(kind: int, spec: _Spec | None) -> _Val:
    """libbpf bpf_core_calc_enumval_relo; a 4-byte enum's value is sign-extended to 64 bits, as there."""
    if kind == _K.BPF_CORE_ENUMVAL_EXISTS:
        return _Val(int(spec is not None))
    if spec is None:
        raise _Poison
    acc = spec.accs[0]
    enum_t = spec.btf.type_by_id(acc.type_id)
    assert isinstance(enum_t, t.Enum)
    value = enum_t.values[acc.idx].value
    if not isinstance(enum_t, t.Enum64):
        value &= 0xFFFFFFFF
        value = value - (1 << 32) if value >> 31 else value
    return _Val(value & 0xFFFFFFFFFFFFFFFF)


def _value(kind: int, spec: _Spec | None) -> _Val:
    if kind in _FIELD_KINDS:
        return _field_value(kind, spec)
    if kind in _ENUMVAL_KINDS:
        return _enum_value(kind, spec)
    return _type_value(kind, spec)


def _result(kind: int, local: _Spec, target: _Spec | None) -> _Res:
    """libbpf bpf_core_calc_relo: local and target values, and whether a load/store may change width."""
    orig = _value(kind, local)
    try:
        new = _value(kind, target)
    except _Poison:
        return _Res(orig.value, 0, poison=True, validate=orig.validate)
    memsz_ok = True
    if orig.size != new.size:
        # Safe width changes (libbpf): a pointer (the kernel's may be narrower) or an unsigned integer
        # (zero-extended either way). Anything else is poisoned if it reaches a load or store.
        lt = local.btf.resolve(orig.type_id) if orig.type_id else None
        tt = target.btf.resolve(new.type_id) if target is not None and new.type_id else None
        memsz_ok = (isinstance(lt, t.Ptr) and isinstance(tt, t.Ptr)) or (
            isinstance(lt, t.Int) and isinstance(tt, t.Int) and not lt.signed and not tt.signed
        )
    return _Res(orig.value, new.value, False, orig.validate, orig.size, new.size, memsz_ok)


def _resolve_relo(relo: CoreRelo, local: Spec, target: Spec, cands: dict[int, list[int]]) -> _Res:
    """Compute *relo*'s result against *target*, pruning the root type's candidates in *cands*."""
    if relo.kind not in _ALL_KINDS:
        raise _Problem("unknown relocation kind")
    lspec = _parse(local, relo)
    if relo.kind == _K.BPF_CORE_TYPE_ID_LOCAL:
        return _Res(relo.type_id, relo.type_id, validate=False)
    ids = cands.get(relo.type_id)
    if ids is None:
        ids = cands[relo.type_id] = _candidates(local, relo.type_id, target)
    chosen: tuple[_Spec, _Res] | None = None
    kept = []
    for cand in ids:
        tspec = _match(lspec, relo.kind, target, cand)
        if tspec is None:
            continue
        res = _result(relo.kind, lspec, tspec)
        kept.append(cand)
        if chosen is None:
            chosen = (tspec, res)
        elif relo.kind in _FIELD_KINDS and tspec.bit_offset != chosen[0].bit_offset:
            raise _Problem(
                f"ambiguous: kernel types id {chosen[0].root_id} and {cand} put it at bit {chosen[0].bit_offset}"
                f" and {tspec.bit_offset}"
            )
        elif (res.poison, res.new) != (chosen[1].poison, chosen[1].new):
            raise _Problem(
                f"ambiguous: kernel types id {chosen[0].root_id} and {cand} give {chosen[1].new} and {res.new}"
            )
    if kept:  # a type that matched once is the type: later relocations only consider those that did
        cands[relo.type_id] = kept
        assert chosen is not None
        return chosen[1]
    return _result(relo.kind, lspec, None)


# -- patching ----------------------------------------------------------------------------------------


_POISON = Insn(op.BPF_JMP | op.BPF_CALL, 0, 0, 0, POISON_HELPER_ID)


def _poisoned(insn: Insn) -> list[Insn]:
    """``call 0xbad2310`` in every slot of *insn* (libbpf bpf_core_poison_insn), keeping its labels; no
    relocatable instruction is a call, so a poisoned one is told apart from a patched one."""
    return [replace(_POISON, labels=insn.labels)] + [_POISON] * (insn.slots - 1)


def _is_poison(insn: Insn) -> bool:
    return (insn.code, insn.imm) == (_POISON.code, _POISON.imm)


def _patch(insn: Insn, res: _Res) -> list[Insn]:
    """*insn* with *res* applied (libbpf bpf_core_patch_insn). Raises _Problem."""
    if res.poison:
        return _poisoned(insn)
    cls = insn.cls
    if cls in (op.BPF_ALU, op.BPF_ALU64):
        if insn.code & op.BPF_X:
            raise _Problem(f"{insn} has a register source: there is no immediate to relocate")
        if res.validate and insn.imm != imm32(res.orig & 0xFFFFFFFF):
            raise _Problem(f"{insn} has imm {insn.imm}, the object's BTF gives {res.orig}")
        return [replace(insn, imm=imm32(res.new & 0xFFFFFFFF))]
    if cls in (op.BPF_LDX, op.BPF_ST, op.BPF_STX):
        if res.validate and insn.off != res.orig:
            raise _Problem(f"{insn} has off {insn.off}, the object's BTF gives {res.orig}")
        if res.new > _SHRT_MAX:
            raise _Problem(f"offset {res.new} does not fit the instruction's 16-bit off")
        if not res.memsz_ok:
            return _poisoned(insn)  # a signed or non-integer field changed size: unsafe to read as before
        code = insn.code
        if res.new_sz != res.orig_sz:
            size = insn.code & 0x18
            if op.SIZE_BYTES[size] != res.orig_sz:
                raise _Problem(f"{insn} accesses {op.SIZE_BYTES[size]} bytes, the field has {res.orig_sz}")
            new_size = {v: k for k, v in op.SIZE_BYTES.items()}.get(res.new_sz)
            if new_size is None:
                raise _Problem(f"the kernel's field is {res.new_sz} bytes: no load or store has that width")
            code = (code & ~0x18) | new_size
        return [replace(insn, code=code, off=res.new)]
    if insn.code == op.LD_IMM64:
        if insn.src_reg or insn.off:
            raise _Problem(f"{insn} is not a plain 64-bit constant load")
        if res.validate and insn.imm != res.orig:
            raise _Problem(f"{insn} loads {insn.imm}, the object's BTF gives {res.orig}")
        return [replace(insn, imm=res.new & 0xFFFFFFFFFFFFFFFF)]
    raise _Problem(f"{insn} is not an instruction CO-RE relocates (ALU immediate, load/store, ld_imm64)")


def apply_core_relos(
    insns: list[Insn],
    relos: Sequence[CoreRelo],
    local: Spec,
    target: Spec,
    *,
    candidates: dict[int, list[int]] | None = None,
    poisoned: dict[int, str] | None = None,
) -> list[Insn]:
    """New instructions with every relocation in *relos* resolved against *target* (the kernel's BTF).

    *insns*: one program as decoded from its section (``Insn`` per instruction, ld_imm64 one value of two
    slots); ``CoreRelo.insn_index`` counts slots from the program's first. *local*: the object's BTF.
    *candidates*: a cache of matching target type ids per local root type id; pass the same dict for
    every program of one object so they agree, as libbpf's per-object cache does. A poisoned ld_imm64
    becomes two one-slot calls, so slot indexes are kept. *poisoned*, when given, receives
    ``{slot: "field byte offset of task_struct___v2.pocket_watch"}`` for each poisoned instruction, so a
    verifier rejection at that slot (``invalid func unknown#195896080``) can name the field.
    Raises CoreReloError (kind, C path, slot).
    """
    cands: dict[int, list[int]] = {} if candidates is None else candidates
    by_slot: dict[int, int] = {}
    slot = 0
    for i, insn in enumerate(insns):
        by_slot[slot] = i
        slot += insn.slots
    out: list[list[Insn]] = [[insn] for insn in insns]
    done: set[int] = set()
    for relo in relos:
        try:
            pos = by_slot.get(relo.insn_index)
            if pos is None:
                raise _Problem(f"slot {relo.insn_index} is not the start of an instruction of this program")
            if pos in done:
                raise _Problem("a second relocation of the same instruction")
            done.add(pos)
            out[pos] = _patch(insns[pos], _resolve_relo(relo, local, target, cands))
            if poisoned is not None and _is_poison(out[pos][0]):
                poisoned[relo.insn_index] = f"{_K(relo.kind).label} of {describe(relo, local)}"
        except (_Problem, BTFError) as err:
            raise CoreReloError(relo.kind, describe(relo, local), relo.insn_index, str(err)) from None
    return [insn for group in out for insn in group]
