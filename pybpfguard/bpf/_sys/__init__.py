"""The syscall layer: ``bpf()``, attr layouts, fd ownership. No other module issues a bpf syscall.

Per-concept command wrappers live in sibling modules (``core``: maps create, program load, test run,
pin/get; others add ``btf``, ``maps``, ``link``, ...), all built on :func:`bpf`.
"""

from pybpfguard.bpf._sys.core import (
    BPF_F_RDONLY,
    BPF_F_WRONLY,
    MapCreateAttr,
    ObjAttr,
    ProgLoadAttr,
    TestRunAttr,
    TestRunResult,
    map_create,
    obj_get,
    obj_pin,
    prog_load,
    prog_test_run,
)
from pybpfguard.bpf._sys.syscall import LEAKED_FDS, NR, BpfCmd, Fd, bpf, ptr, raw_syscall

__all__ = [
    "BPF_F_RDONLY",
    "BPF_F_WRONLY",
    "LEAKED_FDS",
    "NR",
    "BpfCmd",
    "Fd",
    "MapCreateAttr",
    "ObjAttr",
    "ProgLoadAttr",
    "TestRunAttr",
    "TestRunResult",
    "bpf",
    "map_create",
    "obj_get",
    "obj_pin",
    "prog_load",
    "prog_test_run",
    "ptr",
    "raw_syscall",
]
