"""Program section names as libbpf spells them (tools/lib/bpf/libbpf.c ``section_defs``): the program
type, expected attach type, BTF attach target and how the program attaches.

``lsm/file_open`` -> LSM, BPF_LSM_MAC, target ``file_open``; ``tracepoint/syscalls/sys_enter_openat`` ->
TRACEPOINT, target ``syscalls/sys_enter_openat``; ``cgroup/connect4`` -> CGROUP_SOCK_ADDR,
BPF_CGROUP_INET4_CONNECT. Only the prefix before the first ``/`` (or the whole name) selects the row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pybpfguard.bpf.types import AttachType as A
from pybpfguard.bpf.types import ProgFlags
from pybpfguard.bpf.types import ProgType as P

BPF_F_SLEEPABLE = int(ProgFlags.BPF_F_SLEEPABLE)


class AttachKind(enum.Enum):
    """How a program of this section is attached (pybpfguard.bpf.link)."""

    NONE = "none"  # loaded only (socket filters, iterators: the caller attaches)
    TRACING = "tracing"  # tp_btf, fentry, fexit: BTF target fixed at load
    LSM = "lsm"
    RAW_TRACEPOINT = "raw_tp"
    TRACEPOINT = "tracepoint"
    CGROUP = "cgroup"  # needs a cgroup directory
    XDP = "xdp"  # needs an interface


@dataclass(frozen=True, slots=True)
class SectionDef:
    """One row of the table: ``prefix`` (``"lsm"``, ``"cgroup/connect4"``), whether the part after the
    prefix names a target (``takes_target``), the program type, expected attach type, load flags."""

    prefix: str
    prog_type: P
    attach_type: A | None
    attach: AttachKind
    takes_target: bool = False
    prog_flags: int = 0


@dataclass(frozen=True, slots=True)
class SectionInfo:
    """A parsed section name: its row and the target after the prefix (``"file_open"``, or ``""``)."""

    section: str
    definition: SectionDef
    target: str

    @property
    def prog_type(self) -> P:
        return self.definition.prog_type

    @property
    def attach_type(self) -> A | None:
        return self.definition.attach_type


def _cg(name: str, attach_type: A, prog_type: P = P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR) -> SectionDef:
    return SectionDef(name, prog_type, attach_type, AttachKind.CGROUP)


_DEFS: tuple[SectionDef, ...] = (
    SectionDef("socket", P.BPF_PROG_TYPE_SOCKET_FILTER, None, AttachKind.NONE),
    SectionDef("xdp", P.BPF_PROG_TYPE_XDP, A.BPF_XDP, AttachKind.XDP),
    SectionDef("lsm", P.BPF_PROG_TYPE_LSM, A.BPF_LSM_MAC, AttachKind.LSM, True),
    SectionDef("lsm.s", P.BPF_PROG_TYPE_LSM, A.BPF_LSM_MAC, AttachKind.LSM, True, BPF_F_SLEEPABLE),
    SectionDef("tp_btf", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_RAW_TP, AttachKind.TRACING, True),
    SectionDef("fentry", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_FENTRY, AttachKind.TRACING, True),
    SectionDef("fexit", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_FEXIT, AttachKind.TRACING, True),
    SectionDef("fentry.s", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_FENTRY, AttachKind.TRACING, True, BPF_F_SLEEPABLE),
    SectionDef("fexit.s", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_FEXIT, AttachKind.TRACING, True, BPF_F_SLEEPABLE),
    SectionDef("fmod_ret", P.BPF_PROG_TYPE_TRACING, A.BPF_MODIFY_RETURN, AttachKind.TRACING, True),
    SectionDef("iter", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_ITER, AttachKind.NONE, True),
    SectionDef("raw_tp", P.BPF_PROG_TYPE_RAW_TRACEPOINT, None, AttachKind.RAW_TRACEPOINT, True),
    SectionDef("raw_tracepoint", P.BPF_PROG_TYPE_RAW_TRACEPOINT, None, AttachKind.RAW_TRACEPOINT, True),
    SectionDef("tracepoint", P.BPF_PROG_TYPE_TRACEPOINT, None, AttachKind.TRACEPOINT, True),
    SectionDef("tp", P.BPF_PROG_TYPE_TRACEPOINT, None, AttachKind.TRACEPOINT, True),
    _cg("cgroup_skb/ingress", A.BPF_CGROUP_INET_INGRESS, P.BPF_PROG_TYPE_CGROUP_SKB),
    _cg("cgroup_skb/egress", A.BPF_CGROUP_INET_EGRESS, P.BPF_PROG_TYPE_CGROUP_SKB),
    _cg("cgroup/sock_create", A.BPF_CGROUP_INET_SOCK_CREATE, P.BPF_PROG_TYPE_CGROUP_SOCK),
    _cg("cgroup/sock", A.BPF_CGROUP_INET_SOCK_CREATE, P.BPF_PROG_TYPE_CGROUP_SOCK),
    _cg("cgroup/sock_release", A.BPF_CGROUP_INET_SOCK_RELEASE, P.BPF_PROG_TYPE_CGROUP_SOCK),
    _cg("cgroup/post_bind4", A.BPF_CGROUP_INET4_POST_BIND, P.BPF_PROG_TYPE_CGROUP_SOCK),
    _cg("cgroup/post_bind6", A.BPF_CGROUP_INET6_POST_BIND, P.BPF_PROG_TYPE_CGROUP_SOCK),
    _cg("cgroup/dev", A.BPF_CGROUP_DEVICE, P.BPF_PROG_TYPE_CGROUP_DEVICE),
    _cg("cgroup/sysctl", A.BPF_CGROUP_SYSCTL, P.BPF_PROG_TYPE_CGROUP_SYSCTL),
    _cg("cgroup/getsockopt", A.BPF_CGROUP_GETSOCKOPT, P.BPF_PROG_TYPE_CGROUP_SOCKOPT),
    _cg("cgroup/setsockopt", A.BPF_CGROUP_SETSOCKOPT, P.BPF_PROG_TYPE_CGROUP_SOCKOPT),
    _cg("cgroup/bind4", A.BPF_CGROUP_INET4_BIND),
    _cg("cgroup/bind6", A.BPF_CGROUP_INET6_BIND),
    _cg("cgroup/connect4", A.BPF_CGROUP_INET4_CONNECT),
    _cg("cgroup/connect6", A.BPF_CGROUP_INET6_CONNECT),
    _cg("cgroup/connect_unix", A.BPF_CGROUP_UNIX_CONNECT),
    _cg("cgroup/sendmsg4", A.BPF_CGROUP_UDP4_SENDMSG),
    _cg("cgroup/sendmsg6", A.BPF_CGROUP_UDP6_SENDMSG),
    _cg("cgroup/sendmsg_unix", A.BPF_CGROUP_UNIX_SENDMSG),
    _cg("cgroup/recvmsg4", A.BPF_CGROUP_UDP4_RECVMSG),
    _cg("cgroup/recvmsg6", A.BPF_CGROUP_UDP6_RECVMSG),
    _cg("cgroup/recvmsg_unix", A.BPF_CGROUP_UNIX_RECVMSG),
    _cg("cgroup/getpeername4", A.BPF_CGROUP_INET4_GETPEERNAME),
    _cg("cgroup/getpeername6", A.BPF_CGROUP_INET6_GETPEERNAME),
    _cg("cgroup/getpeername_unix", A.BPF_CGROUP_UNIX_GETPEERNAME),
    _cg("cgroup/getsockname4", A.BPF_CGROUP_INET4_GETSOCKNAME),
    _cg("cgroup/getsockname6", A.BPF_CGROUP_INET6_GETSOCKNAME),
    _cg("cgroup/getsockname_unix", A.BPF_CGROUP_UNIX_GETSOCKNAME),
)
_BY_PREFIX = {d.prefix: d for d in _DEFS}


def parse_section(name: str) -> SectionInfo | None:
    """The program kind for section *name*, or None when no row matches (not a program section)."""
    exact = _BY_PREFIX.get(name)
    if exact is not None and not exact.takes_target:
        return SectionInfo(name, exact, "")
    prefix, slash, target = name.partition("/")
    row = _BY_PREFIX.get(prefix)
    if row is not None and row.takes_target and slash and target:
        return SectionInfo(name, row, target)
    return None
