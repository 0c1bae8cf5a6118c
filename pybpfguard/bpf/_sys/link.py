"""Link commands: ``BPF_LINK_CREATE``, ``BPF_LINK_DETACH``, ``BPF_RAW_TRACEPOINT_OPEN``, link info, and
``perf_event_open`` + ``ioctl`` for tracepoint attachments.

Layouts: ``union bpf_attr`` and ``struct bpf_link_info`` in include/uapi/linux/bpf.h (Linux 6.18);
``struct perf_event_attr`` and the ioctl numbers in include/uapi/linux/perf_event.h.
"""

from __future__ import annotations

import ctypes
import fcntl

from pybpfguard.bpf._sys.syscall import BpfCmd, Fd, bpf, raw_syscall
from pybpfguard.bpf.errors import from_errno

c_u32 = ctypes.c_uint32
c_u64 = ctypes.c_uint64


class _LinkCreateTracing(ctypes.Structure):
    _fields_ = [("target_btf_id", c_u32), ("cookie", c_u64)]


class _LinkCreateTail(ctypes.Union):
    """The per-kind union at offset 16 of ``link_create``; only the members we use are spelled out."""

    _fields_ = [
        ("target_btf_id", c_u32),
        ("perf_event_bpf_cookie", c_u64),  # link_create.perf_event.bpf_cookie
        ("tracing", _LinkCreateTracing),
        ("_raw", c_u64 * 6),  # room for the larger members (kprobe_multi, netfilter, tcx ...), kept zero
    ]


class LinkCreateAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_LINK_CREATE: ``prog_fd``, ``target_fd`` (cgroup fd, perf event fd,
    ifindex, or 0 for tracing/LSM), ``attach_type``, ``flags``, then the per-kind union."""

    _anonymous_ = ("u",)
    _fields_ = [
        ("prog_fd", c_u32),
        ("target_fd", c_u32),
        ("attach_type", c_u32),
        ("flags", c_u32),
        ("u", _LinkCreateTail),
    ]


def link_create(
    prog: Fd,
    attach_type: int,
    *,
    target: Fd | None = None,
    target_ifindex: int = 0,
    target_btf_id: int = 0,
    flags: int = 0,
    what: str = "link",
) -> Fd:
    """BPF_LINK_CREATE: attach *prog* (borrowed) and return the owned link fd (Linux 5.7).

    *target* (borrowed) is the cgroup or perf event fd; *target_ifindex* the device for XDP; neither for
    tracing and LSM programs, whose target is fixed at load time (``attach_btf_id``). Raises SyscallError
    subclasses (EINVAL when this kernel has no link for the attach type).
    """
    attr = LinkCreateAttr(
        prog_fd=prog.raw,
        target_fd=target.raw if target is not None else target_ifindex,
        attach_type=attach_type,
        flags=flags,
    )
    attr.target_btf_id = target_btf_id
    return Fd(bpf(BpfCmd.BPF_LINK_CREATE, attr), what)


class _LinkFdAttr(ctypes.Structure):
    _fields_ = [("link_fd", c_u32)]


def link_detach(link: Fd) -> None:
    """BPF_LINK_DETACH (Linux 5.9): detach the link's program now; the fd stays open but defunct.
    EOPNOTSUPP for link kinds without a detach operation."""
    bpf(BpfCmd.BPF_LINK_DETACH, _LinkFdAttr(link_fd=link.raw))


class RawTracepointOpenAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_RAW_TRACEPOINT_OPEN: ``name`` (char *; 0 for tp_btf, whose target is
    ``attach_btf_id``), ``prog_fd``, ``cookie`` (Linux 6.10)."""

    _fields_ = [("name", c_u64), ("prog_fd", c_u32), ("_pad", c_u32), ("cookie", c_u64)]


def raw_tracepoint_open(prog: Fd, name: str | None, what: str = "raw_tp link") -> Fd:
    """BPF_RAW_TRACEPOINT_OPEN (Linux 4.17): attach a raw_tracepoint program to tracepoint *name*, or a
    tp_btf/fentry/fexit/LSM program to its load-time target (*name* None); return the owned link fd."""
    buf = ctypes.create_string_buffer(name.encode()) if name else None
    attr = RawTracepointOpenAttr(name=ctypes.addressof(buf) if buf is not None else 0, prog_fd=prog.raw)
    return Fd(bpf(BpfCmd.BPF_RAW_TRACEPOINT_OPEN, attr, hint=name or ""), what)


class _LinkInfoRawTp(ctypes.Structure):
    _fields_ = [("tp_name", c_u64), ("tp_name_len", c_u32)]


class _LinkInfoTracing(ctypes.Structure):
    _fields_ = [("attach_type", c_u32), ("target_obj_id", c_u32), ("target_btf_id", c_u32)]


class _LinkInfoCgroup(ctypes.Structure):
    _fields_ = [("cgroup_id", c_u64), ("attach_type", c_u32)]


class _LinkInfoTail(ctypes.Union):
    _fields_ = [
        ("raw_tracepoint", _LinkInfoRawTp),
        ("tracing", _LinkInfoTracing),
        ("cgroup", _LinkInfoCgroup),
        ("_raw", c_u64 * 8),
    ]


class LinkInfo(ctypes.Structure):
    """include/uapi/linux/bpf.h: struct bpf_link_info (``type``, ``id``, ``prog_id``, then per-kind)."""

    _anonymous_ = ("u",)
    _fields_ = [("type", c_u32), ("id", c_u32), ("prog_id", c_u32), ("_pad", c_u32), ("u", _LinkInfoTail)]


# include/uapi/linux/perf_event.h
PERF_TYPE_TRACEPOINT = 2
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400  # _IO('$', 0)
PERF_EVENT_IOC_SET_BPF = 0x40042408  # _IOW('$', 8, __u32)


class PerfEventAttr(ctypes.Structure):
    """include/uapi/linux/perf_event.h: struct perf_event_attr, first published size (PERF_ATTR_SIZE_VER0,
    64 bytes); the kernel reads a short attr as if the rest were zero."""

    _fields_ = [
        ("type", c_u32),
        ("size", c_u32),
        ("config", c_u64),
        ("sample_period", c_u64),
        ("sample_type", c_u64),
        ("read_format", c_u64),
        ("flags", c_u64),  # bitfield: disabled, inherit, pinned, ...
        ("wakeup_events", c_u32),
        ("bp_type", c_u32),
        ("config1", c_u64),
    ]


def perf_event_open_tracepoint(tracepoint_id: int, cpu: int = 0, what: str = "perf event") -> Fd:
    """perf_event_open(2) a tracepoint event (id from tracefs ``events/<cat>/<name>/id``) for all tasks on
    *cpu*; return the owned fd. A BPF program attached to it runs for the tracepoint on every CPU (it
    hangs off the tracepoint's ``trace_event_call``). Raises SyscallError naming ``perf_event_open``."""
    attr = PerfEventAttr(
        type=PERF_TYPE_TRACEPOINT,
        size=ctypes.sizeof(PerfEventAttr),
        config=tracepoint_id,
        sample_period=1,
        sample_type=PERF_SAMPLE_RAW,
        wakeup_events=1,
    )
    pid, group_fd = -1, -1  # every task; no group
    try:
        fd = raw_syscall(
            "perf_event_open", ctypes.c_void_p(ctypes.addressof(attr)), pid, cpu, group_fd, PERF_FLAG_FD_CLOEXEC
        )
    except OSError as err:
        raise from_errno("perf_event_open", err.errno or 0, detail=f"tracepoint id {tracepoint_id}") from err
    return Fd(fd, what)


def perf_event_ioc_set_bpf(event: Fd, prog: Fd) -> None:
    """ioctl(PERF_EVENT_IOC_SET_BPF): attach *prog* to the perf *event* (both borrowed); the attachment
    lives as long as the event fd (Linux 4.7 for tracepoints)."""
    _ioctl(event, PERF_EVENT_IOC_SET_BPF, prog.raw, "PERF_EVENT_IOC_SET_BPF")


def perf_event_ioc_enable(event: Fd) -> None:
    """ioctl(PERF_EVENT_IOC_ENABLE) on *event* (borrowed)."""
    _ioctl(event, PERF_EVENT_IOC_ENABLE, 0, "PERF_EVENT_IOC_ENABLE")


def _ioctl(fd: Fd, request: int, arg: int, name: str) -> None:
    try:
        fcntl.ioctl(fd.raw, request, arg)
    except OSError as err:
        raise from_errno(name, err.errno or 0) from err
