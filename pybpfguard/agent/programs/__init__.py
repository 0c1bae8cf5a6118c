"""The registry of the agent's program generators: name -> how to build the program and what it reads.

A generator is a function ``(layout) -> list[Insn]`` (or an object with ``.insns``) where *layout*
answers ``offsetof(struct, member)``: the running kernel's BTF in the agent
(``pybpfguard.bpf.btf.Layout.from_btf``), the recorded ``bytecode/layout.json`` for the listings. Each
entry lists the (struct, member) pairs its generator reads, so the recorded layout holds exactly those.
Modules are imported when a program is generated, not when the registry is read.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pybpfguard.bpf.asm import Insn


@dataclass(frozen=True, slots=True)
class ProgramEntry:
    """One registered generator. ``prog_type`` is the uapi ``enum bpf_prog_type`` name."""

    name: str
    prog_type: str
    module: str
    function: str
    members: tuple[tuple[str, str], ...]

    def generate(self, layout: Any) -> list[Insn]:
        """The program's instructions for *layout* (borrowed)."""
        result = getattr(importlib.import_module(self.module), self.function)(layout)
        insns: Sequence[Insn] = getattr(result, "insns", result)
        return list(insns)


PROGRAMS: dict[str, ProgramEntry] = {
    entry.name: entry
    for entry in (
        ProgramEntry(
            "socket_counter",
            "BPF_PROG_TYPE_SOCKET_FILTER",
            "pybpfguard.agent.programs.socket_counter",
            "socket_counter",
            (("__sk_buff", "len"),),
        ),
    )
}

__all__ = ["PROGRAMS", "ProgramEntry"]
