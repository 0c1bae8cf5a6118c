"""Lay out one program as libbpf does (libbpf.c bpf_object__reloc_code): the entry function's
instructions, then each function it calls or takes the address of, appended once, depth first in the
order first met; call and ``ld_imm64`` offsets fixed to the new positions. Map references become
``BPF_PSEUDO_MAP_IDX`` (an index into the load's ``fd_array``), global data ``BPF_PSEUDO_MAP_IDX_VALUE``
with the byte offset in the second slot, extern functions kfunc calls (``BPF_PSEUDO_KFUNC_CALL``, the
FUNC's id in vmlinux BTF), extern variables typed ksyms
(``BPF_PSEUDO_BTF_ID``, the VAR's id). ``.BTF.ext`` records follow their function to its new position.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pybpfguard.bpf.asm import opcodes as op
from pybpfguard.bpf.elf.btfext import CoreRecord, FuncRecord, LineRecord
from pybpfguard.bpf.elf.errors import RelocationError
from pybpfguard.bpf.elf.object import INSN_BYTES, Function, MapOrigin, ObjectFile, ProgramDef, Reloc
from pybpfguard.bpf.errors import BPFError

_INSN = struct.Struct("<BBhi")
_LD_IMM64 = 0x18
_CALL = 0x85  # BPF_JMP | BPF_CALL


@dataclass(slots=True)
class LinkedProgram:
    """A program ready for BPF_PROG_LOAD but for the fds: ``code`` (bytes, 8 per slot), the placed
    functions (``(Function, first slot)``), the maps it names (``map_refs``: slot -> map name) and the
    BTF.ext records at their final slots (``insn_off`` in instructions, as the kernel wants)."""

    name: str
    code: bytearray
    placed: list[tuple[Function, int]] = field(default_factory=list)
    map_refs: dict[int, str] = field(default_factory=dict)
    func_info: list[FuncRecord] = field(default_factory=list)
    line_info: list[LineRecord] = field(default_factory=list)
    core_relos: list[CoreRecord] = field(default_factory=list)

    @property
    def insn_count(self) -> int:
        return len(self.code) // INSN_BYTES


def _get(code: bytearray, slot: int) -> tuple[int, int, int, int]:
    return _INSN.unpack_from(code, slot * INSN_BYTES)


def _put(code: bytearray, slot: int, opcode: int, regs: int, off: int, imm: int) -> None:
    _INSN.pack_into(code, slot * INSN_BYTES, opcode, regs, off, imm)


def link_program(
    obj: ObjectFile,
    prog: ProgramDef,
    map_index: Mapping[str, int],
    ksym_id: Callable[[str, bool], int] | None = None,
) -> LinkedProgram:
    """Lay out *prog* of *obj*; maps are named by their index in *map_index* (name -> fd_array index).
    *ksym_id(name, is_func)* gives the vmlinux BTF id of an extern function (a kfunc) or variable (a typed
    ``__ksym``), raising a BPFError when the kernel has none (None: every extern is an error).
    Raises RelocationError naming the section, slot and symbol."""
    out = LinkedProgram(prog.name, bytearray())
    where: dict[tuple[int, int], int] = {}  # (section index, function start) -> first slot in out

    def place(fn: Function) -> int:
        base = len(out.code) // INSN_BYTES
        where[(fn.section_index, fn.start)] = base
        cs = obj.code_sections[fn.section_index]
        out.code += cs.code[fn.start * INSN_BYTES : (fn.start + fn.count) * INSN_BYTES]
        out.placed.append((fn, base))
        for i in range(fn.count):
            slot = fn.start + i
            opcode, regs, off, imm = _get(out.code, base + i)
            reloc = cs.relocs.get(slot)
            if opcode == _LD_IMM64 and i + 1 >= fn.count:
                raise RelocationError(obj.path, f"{fn.section} function {fn.name}", "ld_imm64 cut off at its end")
            if reloc is not None:
                _relocate(reloc, base + i, opcode, regs, off, imm, fn)
            elif opcode == _CALL and regs >> 4 == op.BPF_PSEUDO_CALL:
                _call_target(fn, cs.index, slot + imm + 1, base + i, opcode, regs, off)
        return base

    def target_slot(fn: Function, sec_index: int, target: int, at: str) -> int:
        cs = obj.code_sections.get(sec_index)
        callee = cs.function_at(target) if cs is not None else None
        if callee is None:
            raise RelocationError(obj.path, at, f"no function at slot {target} of the target section")
        key = (callee.section_index, callee.start)
        start = where[key] if key in where else place(callee)
        return start + target - callee.start

    def _call_target(fn: Function, sec_index: int, target: int, pos: int, opcode: int, regs: int, off: int) -> None:
        at = f"{fn.section} function {fn.name} slot {pos}"
        dest = target_slot(fn, sec_index, target, at)
        _put(out.code, pos, opcode, regs, off, dest - pos - 1)

    def _relocate(reloc: Reloc, pos: int, opcode: int, regs: int, off: int, imm: int, fn: Function) -> None:
        sym = reloc.symbol
        at = f"{fn.section} slot {reloc.insn_index} ({sym.name or 'section symbol'})"
        if opcode == _CALL:
            if sym.section_index == 0:
                if ksym_id is None:
                    raise RelocationError(obj.path, at, f"call to undefined function {sym.name!r}")
                regs = (regs & 0x0F) | (op.BPF_PSEUDO_KFUNC_CALL << 4)
                _put(out.code, pos, opcode, regs, 0, _extern(sym.name, True, at))
                return
            if sym.section_index not in obj.code_sections:
                raise RelocationError(obj.path, at, "call into a section that holds no code")
            _call_target(fn, sym.section_index, sym.value // INSN_BYTES + imm + 1, pos, opcode, regs, off)
            return
        if opcode != _LD_IMM64:
            raise RelocationError(obj.path, at, f"relocation on opcode {opcode:#04x}, expected ld_imm64 or call")
        if sym.section_index == 0:  # a typed __ksym: the kernel variable's BTF id (vmlinux: btf fd 0)
            if ksym_id is None:
                raise RelocationError(obj.path, at, f"reference to undefined symbol {sym.name!r}")
            _put(out.code, pos, opcode, (regs & 0x0F) | (op.BPF_PSEUDO_BTF_ID << 4), off, _extern(sym.name, False, at))
            hi_opcode, hi_regs, hi_off, _hi_imm = _get(out.code, pos + 1)
            _put(out.code, pos + 1, hi_opcode, hi_regs, hi_off, 0)
            return
        if sym.section_index in obj.code_sections:  # the address of a function: a bpf_loop callback
            dest = target_slot(fn, sym.section_index, (sym.value + imm) // INSN_BYTES, at)
            _put(out.code, pos, opcode, (regs & 0x0F) | (op.BPF_PSEUDO_FUNC << 4), off, dest - pos - 1)
            return
        mdef = next((m for m in obj.maps.values() if m.section_index == sym.section_index
                     and (m.origin == MapOrigin.DATA or m.offset == sym.value)), None)
        if mdef is None:
            raise RelocationError(obj.path, at, "the symbol is in no map, data or code section this loader loads")
        index = map_index[mdef.name]
        out.map_refs[pos] = mdef.name
        hi_opcode, hi_regs, hi_off, _hi_imm = _get(out.code, pos + 1)
        if mdef.origin == MapOrigin.DATA:
            _put(out.code, pos, opcode, (regs & 0x0F) | (op.BPF_PSEUDO_MAP_IDX_VALUE << 4), off, index)
            _put(out.code, pos + 1, hi_opcode, hi_regs, hi_off, imm + sym.value)
        else:
            _put(out.code, pos, opcode, (regs & 0x0F) | (op.BPF_PSEUDO_MAP_IDX << 4), off, index)
            _put(out.code, pos + 1, hi_opcode, hi_regs, hi_off, 0)

    def _extern(name: str, is_func: bool, at: str) -> int:
        assert ksym_id is not None
        try:
            return ksym_id(name, is_func)
        except BPFError as err:
            what = "kernel function" if is_func else "kernel variable (__ksym)"
            raise RelocationError(obj.path, at, f"undefined symbol {name!r}: no such {what} ({err})") from err

    place(prog.function)
    _move_ext(obj, out)
    return out


def _move_ext(obj: ObjectFile, out: LinkedProgram) -> None:
    """Copy the .BTF.ext records of each placed function, ``insn_off`` turned into final slots."""
    if obj.ext is None:
        return
    for fn, base in out.placed:

        def moved(insn_off: int, fn: Function = fn, base: int = base) -> int | None:
            slot = insn_off // INSN_BYTES
            return base + slot - fn.start if fn.start <= slot < fn.start + fn.count else None

        for r in obj.ext.func_info.get(fn.section, ()):
            if (pos := moved(r.insn_off)) is not None:
                out.func_info.append(FuncRecord(pos, r.type_id))
        for r in obj.ext.line_info.get(fn.section, ()):
            if (pos := moved(r.insn_off)) is not None:
                out.line_info.append(LineRecord(pos, r.file_name_off, r.line_off, r.line_col))
        for r in obj.ext.core_relos.get(fn.section, ()):
            if (pos := moved(r.insn_off)) is not None:
                out.core_relos.append(CoreRecord(pos, r.type_id, r.access, r.kind))
    out.func_info.sort(key=lambda r: r.insn_off)
    out.line_info.sort(key=lambda r: r.insn_off)
