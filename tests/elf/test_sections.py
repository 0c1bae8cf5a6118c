"""libbpf's section names map to the program type, attach type and target the kernel needs."""

from __future__ import annotations

import pytest

from pybpfguard.bpf.elf.sections import AttachKind, parse_section
from pybpfguard.bpf.types import AttachType as A
from pybpfguard.bpf.types import ProgFlags
from pybpfguard.bpf.types import ProgType as P


@pytest.mark.parametrize(("section", "prog_type", "attach_type", "kind", "target"), [
    ("lsm/file_open", P.BPF_PROG_TYPE_LSM, A.BPF_LSM_MAC, AttachKind.LSM, "file_open"),
    ("lsm.s/bprm_check_security", P.BPF_PROG_TYPE_LSM, A.BPF_LSM_MAC, AttachKind.LSM, "bprm_check_security"),
    ("tp_btf/sched_process_exec", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_RAW_TP, AttachKind.TRACING,
     "sched_process_exec"),
    ("tracepoint/syscalls/sys_enter_openat", P.BPF_PROG_TYPE_TRACEPOINT, None, AttachKind.TRACEPOINT,
     "syscalls/sys_enter_openat"),
    ("raw_tp/sys_enter", P.BPF_PROG_TYPE_RAW_TRACEPOINT, None, AttachKind.RAW_TRACEPOINT, "sys_enter"),
    ("fentry/do_unlinkat", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_FENTRY, AttachKind.TRACING, "do_unlinkat"),
    ("fexit/do_unlinkat", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_FEXIT, AttachKind.TRACING, "do_unlinkat"),
    ("cgroup/connect4", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_INET4_CONNECT, AttachKind.CGROUP, ""),
    ("cgroup/sendmsg6", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_UDP6_SENDMSG, AttachKind.CGROUP, ""),
    ("cgroup_skb/ingress", P.BPF_PROG_TYPE_CGROUP_SKB, A.BPF_CGROUP_INET_INGRESS, AttachKind.CGROUP, ""),
    ("cgroup_skb/egress", P.BPF_PROG_TYPE_CGROUP_SKB, A.BPF_CGROUP_INET_EGRESS, AttachKind.CGROUP, ""),
    ("socket", P.BPF_PROG_TYPE_SOCKET_FILTER, None, AttachKind.NONE, ""),
    ("xdp", P.BPF_PROG_TYPE_XDP, A.BPF_XDP, AttachKind.XDP, ""),
    ("iter/task", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_ITER, AttachKind.NONE, "task"),
])
def test_libbpf_section_names(section, prog_type, attach_type, kind, target):
    info = parse_section(section)
    assert info is not None
    assert (info.prog_type, info.attach_type, info.definition.attach, info.target) == (
        prog_type, attach_type, kind, target)


def test_sleepable_sections_load_sleepable():
    info = parse_section("lsm.s/file_open")
    assert info is not None and info.definition.prog_flags == ProgFlags.BPF_F_SLEEPABLE


@pytest.mark.parametrize("section", ["lsm", "lsm/", "tp_btf", "cgroup/connect5", "frobnicate", ".text", "socketx"])
def test_names_that_are_not_program_sections(section):
    assert parse_section(section) is None
