"""Links: attaching loaded programs to hooks, and the objects that keep them attached.

Each ``attach_*`` function borrows the :class:`~pybpfguard.bpf.program.Program` and returns a
:class:`Link` that owns the attachment. Closing the link detaches the program unless the link is pinned
(a pin on a bpffs keeps it alive past the process). BPF links (``BPF_LINK_CREATE``, Linux 5.7; raw
tracepoints through ``BPF_RAW_TRACEPOINT_OPEN``, 4.17) are preferred; where the kernel has no link for
the kind, the older interfaces are used (``BPF_PROG_ATTACH`` with ``BPF_F_ALLOW_MULTI`` for cgroups,
``PERF_EVENT_IOC_SET_BPF`` for tracepoints), the fallback is logged and shown in ``Link.method``.
"""

from __future__ import annotations

import ctypes
import enum
import errno as _errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pybpfguard.bpf import _sys
from pybpfguard.bpf._sys import link as _link
from pybpfguard.bpf._sys.prog import ProgAttachFlags, get_fd_by_id, obj_get_info_by_fd, prog_attach, prog_detach
from pybpfguard.bpf.errors import NotSupportedError, SyscallError, WrongTypeError
from pybpfguard.bpf.lsm_support import lsm_refusal, require_bpf_lsm_listed, trampoline_refusal
from pybpfguard.bpf.program import Program
from pybpfguard.bpf.tracefs import tracepoint_id
from pybpfguard.bpf.types import AttachType, LinkType, ProgType

log = logging.getLogger(__name__)


class AttachMethod(enum.Enum):
    """How a :class:`Link` holds its program: the command that attached it (``BPF_OBJ_GET``: reopened
    from a pin)."""

    BPF_LINK_CREATE = "BPF_LINK_CREATE"
    BPF_RAW_TRACEPOINT_OPEN = "BPF_RAW_TRACEPOINT_OPEN"
    BPF_PROG_ATTACH = "BPF_PROG_ATTACH"
    PERF_EVENT_IOC_SET_BPF = "PERF_EVENT_IOC_SET_BPF"
    BPF_OBJ_GET = "BPF_OBJ_GET"


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """A BPF link as the kernel describes it (struct bpf_link_info). ``attach_type`` is set for tracing
    and cgroup links, ``cgroup_id`` for cgroup links, ``target_btf_id`` for tracing links, ``tp_name``
    for raw tracepoint links; the others are 0/None/""."""

    id: int
    link_type: LinkType | int
    prog_id: int
    attach_type: AttachType | int | None = None
    cgroup_id: int = 0
    target_btf_id: int = 0
    tp_name: str = ""


@dataclass(frozen=True, slots=True)
class _ProgAttachment:
    """A legacy ``BPF_PROG_ATTACH``: what ``BPF_PROG_DETACH`` needs (owned dups of both fds)."""

    target: _sys.Fd
    prog: _sys.Fd
    attach_type: AttachType


class Link:
    """One attachment of a program. A context manager; ``close()`` is idempotent.

    Holds either a BPF link fd (``fd``), a perf event fd with the program set on it, or a legacy cgroup
    attachment. ``close()`` detaches unless the link is pinned; ``detach()`` detaches even a pinned link.
    """

    __slots__ = ("_attachment", "fd", "method", "pinned_path")

    def __init__(self, fd: _sys.Fd | None, method: AttachMethod, *, attachment: _ProgAttachment | None = None) -> None:
        self.fd = fd  # a BPF link, or for PERF_EVENT_IOC_SET_BPF the perf event
        self.method = method
        self.pinned_path: Path | None = None
        self._attachment = attachment

    @classmethod
    def from_pinned(cls, path: str | os.PathLike[str]) -> Link:
        """Open the link pinned at *path* (BPF_OBJ_GET); closing the result leaves the pin attached."""
        link = cls(_sys.obj_get(path), AttachMethod.BPF_OBJ_GET)
        link.pinned_path = Path(path)
        return link

    @classmethod
    def from_id(cls, link_id: int) -> Link:
        """Open the BPF link with id *link_id* (BPF_LINK_GET_FD_BY_ID, Linux 5.8); KeyNotFoundError when it
        no longer exists."""
        return cls(get_fd_by_id(_sys.BpfCmd.BPF_LINK_GET_FD_BY_ID, link_id, "link"), AttachMethod.BPF_OBJ_GET)

    @property
    def is_bpf_link(self) -> bool:
        return self.method not in (AttachMethod.BPF_PROG_ATTACH, AttachMethod.PERF_EVENT_IOC_SET_BPF)

    def _link_fd(self, what: str) -> _sys.Fd:
        if not self.is_bpf_link or self.fd is None:
            raise NotSupportedError(what, "", f"this attachment was made with {self.method.value}, not a BPF link")
        return self.fd

    def info(self) -> LinkInfo:
        """BPF_OBJ_GET_INFO_BY_FD on the link. NotSupportedError for legacy attachments."""
        raw = obj_get_info_by_fd(self._link_fd("link info"), _link.LinkInfo())
        link_type = _enum_or_int(LinkType, raw.type)
        info = LinkInfo(raw.id, link_type, raw.prog_id)
        if link_type == LinkType.BPF_LINK_TYPE_TRACING:
            attach = _enum_or_int(AttachType, raw.tracing.attach_type)
            return LinkInfo(raw.id, link_type, raw.prog_id, attach, target_btf_id=raw.tracing.target_btf_id)
        if link_type == LinkType.BPF_LINK_TYPE_CGROUP:
            attach = _enum_or_int(AttachType, raw.cgroup.attach_type)
            return LinkInfo(raw.id, link_type, raw.prog_id, attach, cgroup_id=raw.cgroup.cgroup_id)
        if link_type == LinkType.BPF_LINK_TYPE_RAW_TRACEPOINT:
            return LinkInfo(raw.id, link_type, raw.prog_id, tp_name=self._tp_name())
        return info

    def _tp_name(self) -> str:
        buf = ctypes.create_string_buffer(256)
        raw = _link.LinkInfo()
        raw.raw_tracepoint.tp_name = ctypes.addressof(buf)
        raw.raw_tracepoint.tp_name_len = len(buf)
        obj_get_info_by_fd(self._link_fd("link info"), raw)
        return buf.value.decode(errors="replace")

    def pin(self, path: str | os.PathLike[str]) -> None:
        """BPF_OBJ_PIN the link at *path* (on a bpffs): it stays attached after close, until unpinned."""
        _sys.obj_pin(self._link_fd("pinning"), path)
        self.pinned_path = Path(path)

    def unpin(self) -> None:
        """Remove the pin; the link then lives only as long as open fds refer to it."""
        if self.pinned_path is not None:
            os.unlink(self.pinned_path)
            self.pinned_path = None

    def detach(self) -> None:
        """Detach now, pinned or not, and close. BPF links use BPF_LINK_DETACH (Linux 5.9); kinds without
        it (tracing, raw tracepoint) are detached by removing our pin and closing our fd."""
        if self.is_bpf_link and self.fd is not None and not self.fd.closed:
            try:
                _link.link_detach(self.fd)
            except SyscallError as err:
                if err.errno not in (_errno.EOPNOTSUPP, _errno.EINVAL):
                    raise
                self.unpin()  # this link kind has no detach operation: dropping the pin is how
        self.close()

    def close(self) -> None:
        """Release this attachment: detaches unless pinned. Idempotent."""
        if self._attachment is not None:
            a, self._attachment = self._attachment, None
            try:
                prog_detach(a.target, a.prog, a.attach_type)
            finally:
                a.target.close()
                a.prog.close()
        if self.fd is not None:
            self.fd.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        pinned = f" pinned at {self.pinned_path}" if self.pinned_path else ""
        return f"<Link {self.method.value}{pinned}>"


def _enum_or_int(enum_type: type[enum.IntEnum], value: int) -> enum.IntEnum | int:
    try:
        return enum_type(value)
    except ValueError:
        return value  # newer than our table


def _require(prog: Program, *types: ProgType) -> None:
    if prog.spec.prog_type not in types:
        names = " or ".join(t.name for t in types)
        raise WrongTypeError(f"program {prog.name} is {prog.spec.prog_type.name}; this attach needs {names}")


def _fallback(prog: Program, err: SyscallError, method: AttachMethod) -> None:
    log.warning("program %s: %s; falling back to %s", prog.name, err, method.value)


def attach_raw_tracepoint(prog: Program, name: str) -> Link:
    """Attach a RAW_TRACEPOINT program to the tracepoint *name* (``"sched_process_exec"``, no category)
    with BPF_RAW_TRACEPOINT_OPEN (Linux 4.17). Raises KeyNotFoundError (ENOENT) for an unknown name."""
    _require(prog, ProgType.BPF_PROG_TYPE_RAW_TRACEPOINT, ProgType.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE)
    fd = _link.raw_tracepoint_open(prog.fd, name, f"raw_tp {name} link of {prog.name}")
    return Link(fd, AttachMethod.BPF_RAW_TRACEPOINT_OPEN)


def _attach_btf_target(prog: Program, attach_type: AttachType) -> Link:
    """BPF_LINK_CREATE for a program whose target was fixed at load; BPF_RAW_TRACEPOINT_OPEN with no name
    where this kernel has no such link (EINVAL; tp_btf before Linux 6.10, tracing/LSM before 5.7)."""
    try:
        return Link(_link.link_create(prog.fd, attach_type, what=f"link of {prog.name}"), AttachMethod.BPF_LINK_CREATE)
    except SyscallError as err:
        if err.errno != _errno.EINVAL:
            raise
        _fallback(prog, err, AttachMethod.BPF_RAW_TRACEPOINT_OPEN)
    fd = _link.raw_tracepoint_open(prog.fd, None, f"link of {prog.name}")
    return Link(fd, AttachMethod.BPF_RAW_TRACEPOINT_OPEN)


def attach_tracing(prog: Program) -> Link:
    """Attach a TRACING program (tp_btf, fentry, fexit, fmod_ret) to the target named at load.

    Raises SyscallError with a hint when the kernel refuses trampolines (EPERM, ENOTSUPP)."""
    _require(prog, ProgType.BPF_PROG_TYPE_TRACING)
    attach_type = prog.spec.expected_attach_type
    if attach_type is None:
        raise WrongTypeError(f"program {prog.name}: a tracing program needs expected_attach_type")
    try:
        return _attach_btf_target(prog, attach_type)
    except SyscallError as err:
        hint = trampoline_refusal(err.errno, "")
        if hint and attach_type != AttachType.BPF_TRACE_RAW_TP:
            err.hint = hint
        raise


def attach_lsm(prog: Program) -> Link:
    """Attach an LSM program (BPF_LSM_MAC) to the hook named at load (Linux 5.7).

    Refuses before attaching unless ``bpf`` is in the active LSM list (an attach that never fires is
    worse than an error). Raises BPFLSMUnavailable saying why (list, EPERM, errno 524)."""
    _require(prog, ProgType.BPF_PROG_TYPE_LSM)
    require_bpf_lsm_listed()
    try:
        return _attach_btf_target(prog, prog.spec.expected_attach_type or AttachType.BPF_LSM_MAC)
    except SyscallError as err:
        unavailable = lsm_refusal(err.errno, "")
        if unavailable is not None:
            raise unavailable from err
        raise


def _open_cgroup(cgroup: _sys.Fd | str | os.PathLike[str]) -> _sys.Fd:
    if isinstance(cgroup, _sys.Fd):
        return cgroup.dup()
    return _sys.Fd(os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), f"cgroup {os.fspath(cgroup)}")


def attach_cgroup(
    prog: Program,
    cgroup: _sys.Fd | str | os.PathLike[str],
    attach_type: AttachType | None = None,
    *,
    legacy: bool = False,
) -> Link:
    """Attach a cgroup program (cgroup_skb, cgroup_sock, cgroup_sock_addr, cgroup_device, ...) to
    *cgroup* (a cgroup v2 directory path or an fd, borrowed) at *attach_type* (default: the program's
    ``expected_attach_type``). BPF_LINK_CREATE (Linux 5.7); on EINVAL, or with *legacy*, BPF_PROG_ATTACH
    with BPF_F_ALLOW_MULTI (4.15), detached with BPF_PROG_DETACH on close."""
    attach = attach_type if attach_type is not None else prog.spec.expected_attach_type
    if attach is None:
        raise WrongTypeError(f"program {prog.name}: attach_cgroup needs an attach_type")
    with _open_cgroup(cgroup) as target:
        if not legacy:
            try:
                fd = _link.link_create(prog.fd, attach, target=target, what=f"cgroup link of {prog.name}")
                return Link(fd, AttachMethod.BPF_LINK_CREATE)
            except SyscallError as err:
                if err.errno != _errno.EINVAL:
                    raise
                _fallback(prog, err, AttachMethod.BPF_PROG_ATTACH)
        prog_attach(target, prog.fd, attach, ProgAttachFlags.BPF_F_ALLOW_MULTI)
        attachment = _ProgAttachment(target.dup(), prog.fd.dup(), attach)
    return Link(None, AttachMethod.BPF_PROG_ATTACH, attachment=attachment)


def attach_tracepoint(prog: Program, category: str, name: str, *, legacy: bool = False) -> Link:
    """Attach a TRACEPOINT program to ``<category>/<name>`` (``"syscalls", "sys_enter_openat"``): a perf
    event on the tracepoint, then BPF_LINK_CREATE with BPF_PERF_EVENT (Linux 5.15); on EINVAL, or with
    *legacy*, PERF_EVENT_IOC_SET_BPF (4.7), which lasts as long as the perf event fd the link owns.
    Raises NotSupportedError when tracefs is not mounted or has no such event."""
    _require(prog, ProgType.BPF_PROG_TYPE_TRACEPOINT)
    event = _link.perf_event_open_tracepoint(tracepoint_id(category, name), what=f"perf event {category}/{name}")
    try:
        _link.perf_event_ioc_enable(event)
        if not legacy:
            try:
                fd = _link.link_create(
                    prog.fd, AttachType.BPF_PERF_EVENT, target=event, what=f"perf link of {prog.name}"
                )
                event.close()  # the link holds its own reference to the perf event
                return Link(fd, AttachMethod.BPF_LINK_CREATE)
            except SyscallError as err:
                if err.errno != _errno.EINVAL:
                    raise
                _fallback(prog, err, AttachMethod.PERF_EVENT_IOC_SET_BPF)
        _link.perf_event_ioc_set_bpf(event, prog.fd)
    except BaseException:
        event.close()
        raise
    return Link(event, AttachMethod.PERF_EVENT_IOC_SET_BPF)


def attach_xdp(prog: Program, ifindex: int, flags: int = 0) -> Link:
    """Attach an XDP program to the device *ifindex* with BPF_LINK_CREATE (Linux 5.9); *flags* are the
    XDP_FLAGS_* mode bits (include/uapi/linux/if_link.h), 0 lets the kernel choose."""
    _require(prog, ProgType.BPF_PROG_TYPE_XDP)
    fd = _link.link_create(
        prog.fd, AttachType.BPF_XDP, target_ifindex=ifindex, flags=flags, what=f"xdp link of {prog.name}"
    )
    return Link(fd, AttachMethod.BPF_LINK_CREATE)
