"""tp_btf on sched_process_exec: the program reads the new image's pid, parent pid and inode through BTF
pointers (offsets from the running kernel's BTF) and the test finds its own child's exec in a hash map."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest

from pybpfguard.bpf.asm import BPF_DW, BPF_W, R0, R1, R2, R3, R4, R6, R7, R10, Insn
from pybpfguard.bpf.btf import load_vmlinux
from pybpfguard.bpf.link import AttachMethod, attach_tracing
from pybpfguard.bpf.maps import Map, MapSpec, MapType
from pybpfguard.bpf.program import Program, ProgramSpec
from pybpfguard.bpf.types import AttachType, LinkType, ProgType

pytestmark = pytest.mark.kernel
EXEC_VALUE = struct.Struct("<IIQ")  # parent tgid, pad, inode number


def exec_recorder() -> ProgramSpec:
    """``execs[task->tgid] = {task->real_parent->tgid, bprm->file->f_inode->i_ino}``.

    tp_btf ctx is an array of u64 args of ``btf_trace_sched_process_exec``: (struct task_struct *p,
    pid_t old_pid, struct linux_binprm *bprm)."""
    btf = load_vmlinux()
    off = btf.member_offset
    insns = [
        Insn.ldx_mem(BPF_DW, R6, R1, 0),  # p
        Insn.ldx_mem(BPF_DW, R7, R1, 16),  # bprm
        Insn.ldx_mem(BPF_W, R2, R6, off("task_struct", "tgid")),
        Insn.stx_mem(BPF_W, R10, R2, -4),  # key
        Insn.ldx_mem(BPF_DW, R3, R6, off("task_struct", "real_parent")),
        Insn.ldx_mem(BPF_W, R3, R3, off("task_struct", "tgid")),
        Insn.stx_mem(BPF_W, R10, R3, -24),
        Insn.st_mem(BPF_W, R10, -20, 0),
        Insn.ldx_mem(BPF_DW, R4, R7, off("linux_binprm", "file")),
        Insn.ldx_mem(BPF_DW, R4, R4, off("file", "f_inode")),
        Insn.ldx_mem(BPF_DW, R4, R4, off("inode", "i_ino")),
        Insn.stx_mem(BPF_DW, R10, R4, -16),
        Insn.ld_map_idx(R1, 0),
        Insn.mov64_reg(R2, R10),
        Insn.alu64_imm("add", R2, -4),
        Insn.mov64_reg(R3, R10),
        Insn.alu64_imm("add", R3, -24),
        Insn.mov64_imm(R4, 0),
        Insn.call("map_update_elem"),
        Insn.mov64_imm(R0, 0),
        Insn.exit(),
    ]
    return ProgramSpec(
        "exec_recorder",
        ProgType.BPF_PROG_TYPE_TRACING,
        insns,
        expected_attach_type=AttachType.BPF_TRACE_RAW_TP,
        attach_to="sched_process_exec",
    )


def test_tp_btf_sched_process_exec_sees_childs_pid_parent_and_inode(tmp_path, links):
    binary = tmp_path / "true_copy"
    shutil.copy(shutil.which("true") or "/bin/true", binary)
    binary.chmod(0o755)
    spec = MapSpec(MapType.BPF_MAP_TYPE_HASH, 1024, key_size=4, value_size=EXEC_VALUE.size, name="execs")
    with Map.create(spec) as execs, Program.load(exec_recorder(), fd_array=[execs.fd]) as prog:
        with links.add(attach_tracing(prog)) as link:
            info = link.info()
            assert link.method == AttachMethod.BPF_LINK_CREATE
            # a tp_btf link is a raw tracepoint link in the kernel's eyes (kernel/bpf/syscall.c)
            assert (info.link_type, info.tp_name) == (LinkType.BPF_LINK_TYPE_RAW_TRACEPOINT, "sched_process_exec")
            child = subprocess.Popen([binary])
            assert child.wait(timeout=30) == 0
        parent_tgid, _, ino = EXEC_VALUE.unpack(execs.lookup_elem(struct.pack("<I", child.pid)))
    assert (parent_tgid, ino) == (os.getpid(), binary.stat().st_ino)
