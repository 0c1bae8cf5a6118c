"""A small emitter the agent's program generators share: labels, map references, struct-field loads.

Programs refer to maps by index into the load-time ``fd_array`` (``BPF_PSEUDO_MAP_IDX``), so a generated
program -- and its listing in ``bytecode/`` -- never depends on fd numbers. Struct member offsets come
from a :class:`KernelLayout` (the running kernel's BTF, or the recorded layout for listings).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

from pybpfguard.bpf.asm import BPF_ADD, BPF_B, BPF_DW, BPF_H, BPF_JEQ, BPF_W, R0, R1, R2, R3, R4, R10, BpfFunc, Insn

SIZE = {1: BPF_B, 2: BPF_H, 4: BPF_W, 8: BPF_DW}


class MemberField(Protocol):
    """A member's byte ``offset`` in its struct and its byte ``size``."""

    @property
    def offset(self) -> int: ...

    @property
    def size(self) -> int: ...


class KernelLayout(Protocol):
    """Where kernel struct members live: ``offsetof("task_struct", "real_parent") -> int`` (bytes), and
    ``field(struct, member)`` with the member's size too (``pybpfguard.bpf.btf.Layout``).

    A dotted member walks embedded structs (``"f_path.dentry"``), never pointers."""

    def offsetof(self, struct: str, member: str) -> int: ...

    def field(self, struct: str, member: str) -> MemberField: ...


@dataclass(frozen=True)
class AgentProgram:
    """One generated program: what to load, where to attach it, and its maps in ``fd_array`` order.

    ``prog_type``/``attach`` use section-name words: ``tracing`` + ``tp_btf/sched_process_exec``,
    ``lsm`` + ``lsm/file_open``, ``tracing`` + ``iter/task``.
    """

    name: str
    prog_type: str
    attach: str
    insns: tuple[Insn, ...]
    maps: tuple[str, ...]
    license: str = "GPL"
    #: labels of the bpf-to-bpf subprograms after the main one (each needs a ``func_info`` record)
    functions: tuple[str, ...] = ()


@dataclass
class Emitter:
    """Collects instructions; ``label()`` names the next one; ``map_ref()`` loads a map by name;
    ``subprogram()`` adds a bpf-to-bpf function, emitted after the main program."""

    maps: tuple[str, ...]
    insns: list[Insn] = field(default_factory=list)
    _pending: list[str] = field(default_factory=list)
    _subprograms: dict[str, tuple[Callable[[Emitter], None], Hashable]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]

    def __call__(self, *insns: Insn) -> None:
        for insn in insns:
            for name in self._pending:
                insn = insn.labelled(name)
            self._pending.clear()
            self.insns.append(insn)

    def label(self, name: str) -> None:
        self._pending.append(name)

    def fresh(self, stem: str) -> str:
        """A label name no other call returns."""
        return f"{stem}_{next(self._ids)}"

    def map_ref(self, reg: int, name: str) -> None:
        self(Insn.ld_map_idx(reg, self.maps.index(name)))

    def load(self, dst: int, src: int, layout: KernelLayout, struct: str, member: str) -> None:
        """``dst = *(uN *)(src + offsetof(struct, member))``, N the member's size in the layout (1, 2, 4
        or 8 bytes; a pointer or u64 is 8). The instruction notes ``struct->member`` for the listing.
        Raises KeyError for a member of another size (an array or an embedded struct)."""
        f = layout.field(struct, member)
        self(Insn.ldx_mem(SIZE[f.size], dst, src, f.offset).noted(f"{struct}->{member}"))

    def arg(self, dst: int, index: int, what: str) -> None:
        """``dst = ctx[index]`` (u64 slots, R1 = ctx), noted ``ctx[index]: what``: a tracing or LSM
        program's *index*-th argument (``what`` names it, e.g. ``struct file *file``)."""
        self(Insn.ldx_mem(BPF_DW, dst, R1, 8 * index).noted(f"ctx[{index}]: {what}"))

    def member_addr(self, dst: int, layout: KernelLayout, struct: str, member: str) -> None:
        """``dst += offsetof(struct, member)``: from a ``struct *`` to ``&struct->member``."""
        self(Insn.alu64_imm(BPF_ADD, dst, layout.offsetof(struct, member)).noted(f"&{struct}->{member}"))

    def stack_key(self, off: int, src: int, size: int = 4) -> None:
        """Store *src* at ``fp + off`` (a negative stack offset) for use as a map key."""
        self(Insn.stx_mem(SIZE[size], R10, src, off))

    def lookup(self, name: str, key_off: int) -> None:
        """``r0 = bpf_map_lookup_elem(&name, fp + key_off)``."""
        self.map_ref(R1, name)
        self(Insn.mov64_reg(R2, R10), Insn.alu64_imm(BPF_ADD, R2, key_off), Insn.call(BpfFunc.map_lookup_elem))

    def update(self, name: str, key_off: int, value_off: int, flags: int) -> None:
        """``bpf_map_update_elem(&name, fp + key_off, fp + value_off, flags)``."""
        self.map_ref(R1, name)
        self(Insn.mov64_reg(R2, R10), Insn.alu64_imm(BPF_ADD, R2, key_off),
             Insn.mov64_reg(R3, R10), Insn.alu64_imm(BPF_ADD, R3, value_off),
             Insn.mov64_imm(R4, flags), Insn.call(BpfFunc.map_update_elem))

    def count(self, name: str, value_off: int, key_off: int) -> None:
        """Add 1 to the u64 at *value_off* of entry 0 of the per-CPU array *name*; key slot at *key_off*."""
        skip = self.fresh("count_done")
        self(Insn.st_mem(BPF_W, R10, key_off, 0))
        self.lookup(name, key_off)
        self(Insn.jmp_imm(BPF_JEQ, R0, 0, to=skip), Insn.mov64_imm(R1, 1),
             Insn.atomic(BPF_ADD, BPF_DW, R0, R1, value_off))
        self.label(skip)

    def subprogram(self, label: str, body: Callable[[Emitter], None], key: Hashable = None) -> None:
        """Register the function at *label*: ``body(emitter)`` emits it (ending in ``exit``) after the main
        program, once, however many call sites register it. *key* says what the body was built for;
        registering *label* again with another key raises ValueError (two bodies cannot share a label)."""
        known = self._subprograms.setdefault(label, (body, key))
        if known[1] != key:
            raise ValueError(f"subprogram {label}: registered for {known[1]!r}, now for {key!r}")

    def program(self, name: str, prog_type: str, attach: str) -> AgentProgram:
        if self._pending:
            raise ValueError(f"{name}: labels {self._pending} name no instruction")
        for label, (body, _) in self._subprograms.items():
            self.label(label)
            body(self)
            if self._pending:
                raise ValueError(f"{name}: subprogram {label} ends in labels {self._pending}")
        return AgentProgram(name, prog_type, attach, tuple(self.insns), self.maps,
                            functions=tuple(self._subprograms))
