"""The process-tracking programs on the real kernel: identity from the kernel's own task fields."""

from __future__ import annotations

import os

import pytest

from pybpfguard.agent.programs.load import load_program
from pybpfguard.agent.programs.process import procseed_program
from pybpfguard.bpf.iter import run_iterator

pytestmark = pytest.mark.kernel

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_start_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[19])


def test_task_iterator_seeds_processes_that_predate_the_agent_with_kernel_start_times(agent_maps, kernel_layout):
    with load_program(procseed_program(kernel_layout), agent_maps) as prog:
        run_iterator(prog)
    procs = agent_maps["procs"]
    me = procs.lookup_elem(os.getpid())
    assert me.pid == os.getpid() and me.ppid == os.getppid()
    assert me.start_time * CLK_TCK // 1_000_000_000 == _proc_start_ticks(os.getpid())
    assert me.parent_start_time * CLK_TCK // 1_000_000_000 == _proc_start_ticks(os.getppid())
    st = os.stat(f"/proc/{os.getpid()}/exe")
    assert me.exec_ino == st.st_ino and me.exec_dev == os.major(st.st_dev) << 20 | os.minor(st.st_dev)
    pids = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    seeded = {key for key, _ in procs.items()}
    # every process of the system is entered (the 6.18 task iterator does not visit pid 1 here)
    assert pids - seeded <= {1}
