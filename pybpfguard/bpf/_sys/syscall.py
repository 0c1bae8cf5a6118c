"""The ``bpf(2)`` syscall through ctypes, the command numbers, and :class:`Fd`, the owner of one fd.

Source: include/uapi/linux/bpf.h (``enum bpf_cmd``), man bpf(2). This package is the only code in
pybpfguard that issues ``bpf()``.
"""

from __future__ import annotations

import ctypes
import enum
import fcntl
import os
import platform
import warnings

from pybpfguard.bpf.errors import InvalidArgumentError, WrongTypeError, from_errno

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h
_NR = {
    "x86_64": {"bpf": 321, "perf_event_open": 298},
    "aarch64": {"bpf": 280, "perf_event_open": 241},
}
try:
    NR = _NR[platform.machine()]
except KeyError as err:  # pragma: no cover - other arches are not supported yet
    raise ImportError(f"pybpfguard: unsupported architecture {platform.machine()!r}") from err


class BpfCmd(enum.IntEnum):
    """include/uapi/linux/bpf.h: enum bpf_cmd."""

    BPF_MAP_CREATE = 0
    BPF_MAP_LOOKUP_ELEM = 1
    BPF_MAP_UPDATE_ELEM = 2
    BPF_MAP_DELETE_ELEM = 3
    BPF_MAP_GET_NEXT_KEY = 4
    BPF_PROG_LOAD = 5
    BPF_OBJ_PIN = 6
    BPF_OBJ_GET = 7
    BPF_PROG_ATTACH = 8
    BPF_PROG_DETACH = 9
    BPF_PROG_TEST_RUN = 10
    BPF_PROG_GET_NEXT_ID = 11
    BPF_MAP_GET_NEXT_ID = 12
    BPF_PROG_GET_FD_BY_ID = 13
    BPF_MAP_GET_FD_BY_ID = 14
    BPF_OBJ_GET_INFO_BY_FD = 15
    BPF_PROG_QUERY = 16
    BPF_RAW_TRACEPOINT_OPEN = 17
    BPF_BTF_LOAD = 18
    BPF_BTF_GET_FD_BY_ID = 19
    BPF_TASK_FD_QUERY = 20
    BPF_MAP_LOOKUP_AND_DELETE_ELEM = 21
    BPF_MAP_FREEZE = 22
    BPF_BTF_GET_NEXT_ID = 23
    BPF_MAP_LOOKUP_BATCH = 24
    BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25
    BPF_MAP_UPDATE_BATCH = 26
    BPF_MAP_DELETE_BATCH = 27
    BPF_LINK_CREATE = 28
    BPF_LINK_UPDATE = 29
    BPF_LINK_GET_FD_BY_ID = 30
    BPF_LINK_GET_NEXT_ID = 31
    BPF_ENABLE_STATS = 32
    BPF_ITER_CREATE = 33
    BPF_LINK_DETACH = 34
    BPF_PROG_BIND_MAP = 35
    BPF_TOKEN_CREATE = 36


def bpf(cmd: BpfCmd, attr: ctypes.Structure, size: int | None = None, *, hint: str = "") -> int:
    """Issue ``bpf(cmd, &attr, sizeof attr)``; return the non-negative result (often a new fd).

    Raises the :class:`~pybpfguard.bpf.errors.SyscallError` subclass for the errno, naming *cmd*.
    """
    ret = _syscall(NR["bpf"], int(cmd), ctypes.byref(attr), ctypes.sizeof(attr) if size is None else size)
    if ret < 0:
        err = ctypes.get_errno()
        raise from_errno(cmd.name, err, hint)
    return int(ret)


def raw_syscall(name: str, *args: int | ctypes.c_void_p | None) -> int:
    """Issue the syscall *name* (a key of ``NR``) with integer/pointer args; raise OSError on failure."""
    ret = _syscall(NR[name], *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return int(ret)


def ptr(buf: ctypes.Array | ctypes.Structure | bytes | bytearray | None) -> int:  # type: ignore[type-arg]
    """The address of *buf* for a ``__aligned_u64`` pointer field of an attr (0 for None/empty).

    The caller keeps *buf* alive for the duration of the syscall. ``bytes`` are copied into a ctypes
    buffer that is cached on nothing: pass a ctypes buffer when the kernel writes into it.
    """
    if buf is None:
        return 0
    if isinstance(buf, (bytes, bytearray)):
        if not buf:
            return 0
        raise WrongTypeError("ptr() needs a ctypes buffer; wrap bytes with ctypes.create_string_buffer first")
    return ctypes.addressof(buf)


LEAKED_FDS: list[str] = []  # descriptions of Fd objects garbage-collected while still open


class Fd:
    """Owns one file descriptor: closes it exactly once.

    ``bpf()`` reads fd 0 as "none" in several attrs, so an fd 0 is duplicated away on adoption.
    Handover is explicit (:meth:`detach`). ``__del__`` only closes as a safety net and records the leak
    in ``LEAKED_FDS`` (the test suite fails on leaks).
    """

    __slots__ = ("_fd", "what")

    def __init__(self, fd: int, what: str = "") -> None:
        if fd < 0:
            raise InvalidArgumentError(f"invalid fd {fd}")
        if fd == 0:
            new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1)
            os.close(fd)
            fd = new
        self._fd = fd
        self.what = what

    @property
    def raw(self) -> int:
        """The fd number; raises ValueError once closed."""
        if self._fd < 0:
            raise InvalidArgumentError(f"fd of {self.what or 'object'} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        """Close the fd; a second call does nothing."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def detach(self) -> int:
        """Give up ownership and return the fd number; the caller must close it."""
        fd = self.raw
        self._fd = -1
        return fd

    def dup(self) -> Fd:
        """A new owned fd (close-on-exec) for the same kernel object."""
        return Fd(fcntl.fcntl(self.raw, fcntl.F_DUPFD_CLOEXEC, 1), self.what)

    def fileno(self) -> int:
        return self.raw

    def __enter__(self) -> Fd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            LEAKED_FDS.append(f"fd {self._fd} ({self.what or 'unnamed'})")
            warnings.warn(f"pybpfguard: leaked fd {self._fd} ({self.what})", ResourceWarning, stacklevel=1)
            self.close()

    def __repr__(self) -> str:
        return f"Fd({self._fd}, {self.what!r})"
