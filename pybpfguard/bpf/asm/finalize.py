"""``finalize()``: instructions with labels -> the bytes the kernel loads. The only place where
labels become slot offsets.

Offsets count 8-byte slots (an ld_imm64 takes two) and are relative to the next slot:
``distance = slot(target) - slot(jump) - 1`` (Documentation/bpf/standardization/instruction-set.rst,
"Jump instructions"). A conditional jump or ``ja`` carries it in the int16 ``off``; ``gotol``, a local
call and ``ld_func`` carry it in the int32 ``imm``.

A jump that does not fit in int16 never wraps. With ``isa >= 4`` it is relaxed:
``ja`` becomes ``gotol``; ``if a <cond> b goto far`` becomes ``if a <!cond> b goto +1; gotol far``;
a condition without an inverse (``&``, ``may_goto``) becomes ``if ... goto +1; goto +1; gotol far``.
Relaxing grows the program, so it repeats until no jump changes. Without v4 it raises JumpOutOfRange.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from pybpfguard.bpf.asm import opcodes as op
from pybpfguard.bpf.asm.errors import (
    DuplicateLabel,
    FieldRangeError,
    InvalidJumpTarget,
    JumpOutOfRange,
    UnresolvedLabel,
)
from pybpfguard.bpf.asm.insn import Insn, imm32

_SLOT = struct.Struct("<BBhi")  # struct bpf_insn: code, src_reg:4|dst_reg:4, off, imm
_LD_IMM64 = struct.Struct("<BBhIII")  # first slot with the low imm, then code/regs/off 0 and the high imm

_OFF_MAX = 0x7FFF
_IMM_MAX = 0x7FFFFFFF

# how a reference is encoded: in off (int16, relaxable), or in imm (int32)
_IN_OFF, _IN_IMM, _IN_IMM64 = 0, 1, 2

_JMP_CLASSES = (op.BPF_JMP, op.BPF_JMP32)
_GOTOL = op.BPF_JMP32 | op.BPF_JA
_JA = op.BPF_JMP | op.BPF_JA


_BY_SRC = -1  # call and ld_imm64: the kind depends on src_reg


def _kind_of_code(code: int) -> int | None:
    if code & 0x07 in _JMP_CLASSES:
        jop = code & 0xF0
        if jop == op.BPF_EXIT:
            return None
        if jop == op.BPF_CALL:
            return _BY_SRC
        return _IN_IMM if code == _GOTOL else _IN_OFF
    return _BY_SRC if code == op.LD_IMM64 else None


_KIND = tuple(_kind_of_code(code) for code in range(256))


def ref_kind(insn: Insn) -> int | None:
    """How *insn* refers to another instruction (_IN_OFF, _IN_IMM, _IN_IMM64) or None."""
    kind = _KIND[insn.code & 0xFF]
    if kind != _BY_SRC:
        return kind
    if insn.code == op.LD_IMM64:
        return _IN_IMM64 if insn.src_reg == op.BPF_PSEUDO_FUNC else None
    return _IN_IMM if insn.src_reg == op.BPF_PSEUDO_CALL else None


def _raw_distance(insn: Insn, kind: int) -> int:
    if kind == _IN_OFF:
        return insn.off
    if kind == _IN_IMM:
        return insn.imm
    return imm32(insn.imm & 0xFFFFFFFF)


def _resolve(prog: list[Insn]) -> tuple[list[int], list[int | None], list[int | None], dict[int, int]]:
    """Return per instruction (size in slots, reference kind, target insn index), and the extra slot
    distance of raw offsets that leave the program (index -> slots past the end or before the start)."""
    sizes: list[int] = []
    starts: list[int] = []
    kinds: list[int | None] = []
    labels: dict[str, int] = {}
    slot = 0
    kind_of = _KIND
    for i, insn in enumerate(prog):
        code = insn.code
        starts.append(slot)
        if code == op.LD_IMM64:
            sizes.append(2)
            slot += 2
        else:
            sizes.append(1)
            slot += 1
        kind = kind_of[code & 0xFF]
        kinds.append(kind if kind != _BY_SRC else ref_kind(insn))
        if insn.labels:
            for label in insn.labels:
                first = labels.setdefault(label, i)
                if first != i:
                    raise DuplicateLabel(i, label, first)
    targets: list[int | None] = []
    extras: dict[int, int] = {}
    slot_to_index: dict[int, int] | None = None
    total = slot
    for i, insn in enumerate(prog):
        kind = kinds[i]
        if kind is None:
            targets.append(None)
        elif insn.target is not None:
            try:
                targets.append(labels[insn.target])
            except KeyError:
                raise UnresolvedLabel(i, insn.target) from None
        else:
            # a raw offset: pin it to the instruction it reaches now, so relaxation keeps it right
            if slot_to_index is None:
                slot_to_index = {s: j for j, s in enumerate(starts)}
            dest = starts[i] + 1 + _raw_distance(insn, kind)
            j = slot_to_index.get(dest)
            if j is None:
                if 0 <= dest < total:
                    owner = slot_to_index[dest - 1]
                    raise InvalidJumpTarget(i, dest, f"second slot of the ld_imm64 at insn {owner}")
                # outside the program: kept as given, relative to the program's end or start (the
                # verifier refuses it; a fragment may mean it)
                j, extras[i] = (len(prog), dest - total) if dest >= total else (0, dest)
            targets.append(j)
    return sizes, kinds, targets, extras


def _positions(sizes: list[int]) -> list[int]:
    """Slot position of each instruction, plus the program's end."""
    pos = []
    slot = 0
    for size in sizes:
        pos.append(slot)
        slot += size
    pos.append(slot)
    return pos


def _relax(
    prog: list[Insn],
    sizes: list[int],
    kinds: list[int | None],
    targets: list[int | None],
    extras: dict[int, int],
    isa: int,
) -> list[int]:
    """Grow far int16 jumps (see module doc) until all fit; return the slot position of each insn."""
    while True:
        pos = _positions(sizes)
        changed = False
        for i, kind in enumerate(kinds):
            if kind != _IN_OFF or sizes[i] != 1:
                continue
            distance = pos[targets[i]] + extras.get(i, 0) - pos[i] - 1  # type: ignore[index]
            if -_OFF_MAX - 1 <= distance <= _OFF_MAX:
                continue
            if isa < 4:
                raise JumpOutOfRange(i, distance, _OFF_MAX)
            if prog[i].code == _JA:
                kinds[i] = _IN_IMM  # same size: becomes gotol
                prog[i] = Insn(_GOTOL, 0, 0, 0, 0, prog[i].labels, prog[i].target)
                continue
            sizes[i] = 2 if (prog[i].code & 0xF0) in op.JMP_INVERSE else 3
            changed = True
        if not changed:
            return pos


def finalize(insns: Iterable[Insn], isa: int = 4) -> bytes:
    """Resolve labels and encode *insns* into little-endian ``struct bpf_insn`` bytes (8 per slot).

    *isa* is the highest instruction-set version the target kernel runs (4 from Linux 6.6); it only
    decides whether far jumps may be relaxed to ``gotol``. Raises DuplicateLabel, UnresolvedLabel,
    InvalidJumpTarget (into an ld_imm64's second slot), JumpOutOfRange and FieldRangeError, each with
    the instruction index. A raw offset (not a label) that leaves the program is kept as given, counted
    from the program's end (or start), so relaxing never changes where it points.
    """
    prog = list(insns)
    sizes, kinds, targets, extras = _resolve(prog)
    pos = _relax(prog, sizes, kinds, targets, extras, isa) if _IN_OFF in kinds else _positions(sizes)
    out = bytearray()
    pack = _SLOT.pack
    for i, insn in enumerate(prog):
        code, dst, src, off, imm = insn.code, insn.dst_reg, insn.src_reg, insn.off, insn.imm
        if not (0 <= dst <= 10 and 0 <= src <= 10):
            field, value = ("dst_reg", dst) if not 0 <= dst <= 10 else ("src_reg", src)
            raise FieldRangeError(field, value, 0, 10, i)
        regs = src << 4 | dst
        kind = kinds[i]
        if kind is not None:
            distance = pos[targets[i]] - pos[i] - 1  # type: ignore[index]
            if extras:
                distance += extras.get(i, 0)
            size = sizes[i]
            if size > 1 and kind == _IN_OFF:  # relaxed conditional jump
                _emit_relaxed(out, insn, regs, distance, size, i)
                continue
            if kind == _IN_OFF:
                off = distance
            elif kind == _IN_IMM:
                imm = _check_imm_distance(distance, i)
            else:
                imm = (imm & ~0xFFFFFFFF) | (_check_imm_distance(distance, i) & 0xFFFFFFFF)
        if code == op.LD_IMM64:
            if not 0 <= imm < 1 << 64:
                imm = _ld_imm64_value(imm, i)
            if not -0x8000 <= off <= _OFF_MAX:
                raise FieldRangeError("off", off, -0x8000, _OFF_MAX, i)
            out += _LD_IMM64.pack(code, regs, off, imm & 0xFFFFFFFF, 0, imm >> 32)
            continue
        try:
            out += pack(code, regs, off, imm)
        except struct.error:
            out += pack(*_checked(code, regs, off, imm, i))
    return bytes(out)


def _emit_relaxed(out: bytearray, insn: Insn, regs: int, distance: int, size: int, index: int) -> None:
    """Write a far conditional jump as a short hop over a gotol (see the module doc)."""
    gotol_distance = _check_imm_distance(distance - (size - 1), index)
    if size == 2:
        inverse = insn.code & 0x0F | op.JMP_INVERSE[insn.code & 0xF0]
        out += _SLOT.pack(inverse, regs, 1, insn.imm)
    else:
        out += _SLOT.pack(insn.code, regs, 1, insn.imm)
        out += _SLOT.pack(_JA, 0, 1, 0)
    out += _SLOT.pack(_GOTOL, 0, 0, gotol_distance)


def _check_imm_distance(distance: int, index: int) -> int:
    if not -_IMM_MAX - 1 <= distance <= _IMM_MAX:
        raise JumpOutOfRange(index, distance, _IMM_MAX)
    return distance


def _ld_imm64_value(imm: int, index: int) -> int:
    if -(1 << 63) <= imm < 0:
        return imm + (1 << 64)
    raise FieldRangeError("imm", imm, -(1 << 63), (1 << 64) - 1, index)


def _checked(code: int, regs: int, off: int, imm: int, index: int) -> tuple[int, int, int, int]:
    """Slow path: normalise a u32 imm and name the first field that does not fit."""
    if not 0 <= code <= 0xFF:
        raise FieldRangeError("code", code, 0, 0xFF, index)
    if not -0x8000 <= off <= _OFF_MAX:
        raise FieldRangeError("off", off, -0x8000, _OFF_MAX, index)
    if not -_IMM_MAX - 1 <= imm <= 0xFFFFFFFF:
        raise FieldRangeError("imm", imm, -_IMM_MAX - 1, 0xFFFFFFFF, index)
    return code, regs, off, imm32(imm)
