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

from pybpfguard.agent.programs.dpath import KERNEL_FIELDS as _DPATH_FIELDS
from pybpfguard.bpf.asm import Insn

# (struct, member) pairs the process-tracking generators read (pybpfguard.agent.programs.process)
_PROCESS_FIELDS: tuple[tuple[str, str], ...] = (
    ("task_struct", "pid"), ("task_struct", "tgid"), ("task_struct", "real_parent"),
    ("task_struct", "group_leader"), ("task_struct", "start_time"), ("task_struct", "signal"),
    ("task_struct", "mm"), ("signal_struct", "live"), ("linux_binprm", "file"), ("linux_binprm", "argc"),
    ("file", "f_inode"), ("inode", "i_ino"), ("inode", "i_sb"), ("super_block", "s_dev"),
    ("mm_struct", "arg_start"), ("mm_struct", "arg_end"), ("mm_struct", "exe_file"),
)


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
        return self.build(layout)[0]

    def build(self, layout: Any) -> tuple[list[Insn], tuple[str, ...]]:
        """The program's instructions for *layout* and its map names in ``fd_array`` order (the
        generator's ``AgentProgram.maps``, else its module's ``MAPS``)."""
        module = importlib.import_module(self.module)
        result = getattr(module, self.function)(layout)
        insns: Sequence[Insn] = getattr(result, "insns", result)
        maps: tuple[str, ...] = tuple(getattr(result, "maps", getattr(module, "MAPS", ())))
        return list(insns), maps


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
        # the exec program as loaded by default, and with the exec signal fallback (--enforce-fallback=signal)
        ProgramEntry("exec", "BPF_PROG_TYPE_TRACING", "pybpfguard.agent.programs.process", "exec_telemetry_program",
                     (*_PROCESS_FIELDS, ("file", "f_path"), *_DPATH_FIELDS)),
        ProgramEntry("exec_signal_fallback", "BPF_PROG_TYPE_TRACING", "pybpfguard.agent.programs.process",
                     "exec_program", (*_PROCESS_FIELDS, ("file", "f_path"), *_DPATH_FIELDS)),
        *(
            ProgramEntry(name, "BPF_PROG_TYPE_TRACING", "pybpfguard.agent.programs.process", f"{name}_program",
                         _PROCESS_FIELDS)
            for name in ("fork", "exit", "procseed")
        ),
        ProgramEntry("file_open", "BPF_PROG_TYPE_LSM", "pybpfguard.agent.programs.file_lsm", "file_open_program",
                     (*_PROCESS_FIELDS, ("file", "f_path"))),
        ProgramEntry("bprm_check", "BPF_PROG_TYPE_LSM", "pybpfguard.agent.programs.exec_lsm", "bprm_check_program",
                     (*_PROCESS_FIELDS, ("file", "f_path"), ("linux_binprm", "filename"))),
    )
}

__all__ = ["PROGRAMS", "ProgramEntry"]
