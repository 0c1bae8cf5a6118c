"""The process-tracking programs on the real kernel: identity from the kernel's own task fields."""

from __future__ import annotations

import os

import pytest

from pybpfguard.agent.programs.emit import AgentProgram
from pybpfguard.agent.programs.load import load_program
from pybpfguard.agent.programs.process import procseed_program
from pybpfguard.agent.sensors.process import PROCS
from pybpfguard.bpf.asm import R0, R1, R2, R3, R10, Insn
from pybpfguard.bpf.asm.opcodes import BPF_DW, BPF_W
from pybpfguard.bpf.iter import run_iterator

pytestmark = pytest.mark.kernel

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_start_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[19])


def test_task_iterator_seeds_processes_that_predate_the_agent_with_kernel_start_times(agent_maps, kernel_layout):
    with load_program(procseed_program(kernel_layout), agent_maps) as prog:
        run_iterator(prog)
    procs = agent_maps[PROCS]
    me = procs.lookup_elem(os.getpid())
    assert me.pid == os.getpid() and me.ppid == os.getppid()
    assert me.start_time * CLK_TCK // 1_000_000_000 == _proc_start_ticks(os.getpid())
    assert me.parent_start_time * CLK_TCK // 1_000_000_000 == _proc_start_ticks(os.getppid())
    st = os.stat(f"/proc/{os.getpid()}/exe")
    assert me.exec_ino == st.st_ino and me.exec_dev == os.major(st.st_dev) << 20 | os.minor(st.st_dev)
    # The oracle is the kernel's own task iterator: every thread-group leader it visits is entered (on
    # some kernels it does not visit every process /proc lists, e.g. pid 1 on the sandbox's 6.18).
    visited = _leaders_the_kernel_iterates(kernel_layout)
    seeded = {key for key, _ in procs.items()}
    assert os.getpid() in visited
    assert visited - seeded <= _pids_gone(visited - seeded)


def _leaders_the_kernel_iterates(k) -> set[int]:  # type: ignore[no-untyped-def]
    """The tgid of every thread-group leader a bare ``iter/task`` program sees (bpf_seq_write of tgid)."""
    insns = (
        Insn.ldx_mem(BPF_DW, R2, R1, 8),  # ctx->task
        Insn.jmp_imm("jeq", R2, 0, to="out"),
        Insn.ldx_mem(BPF_W, R3, R2, k.offsetof("task_struct", "pid")),
        Insn.ldx_mem(BPF_W, R2, R2, k.offsetof("task_struct", "tgid")),
        Insn.jmp_reg("jne", R2, R3, to="out"),
        Insn.stx_mem(BPF_W, R10, R2, -8),
        Insn.ldx_mem(BPF_DW, R1, R1, 0),  # ctx->meta
        Insn.ldx_mem(BPF_DW, R1, R1, 0),  # meta->seq
        Insn.mov64_reg(R2, R10),
        Insn.alu64_imm("add", R2, -8),
        Insn.mov64_imm(R3, 4),
        Insn.call("seq_write"),
        Insn.mov64_imm(R0, 0).labelled("out"),
        Insn.exit(),
    )
    prog = AgentProgram("tgids", "tracing", "iter/task", insns, ())
    with load_program(prog, {}) as loaded:
        out = run_iterator(loaded)
    return {int.from_bytes(out[i:i + 4], "little") for i in range(0, len(out), 4)}


def _pids_gone(pids: set[int]) -> set[int]:
    """Those of *pids* that have exited since the iteration (a race the assertion allows)."""
    return {p for p in pids if not os.path.exists(f"/proc/{p}")}
