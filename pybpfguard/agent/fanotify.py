"""fanotify(7) through ctypes: the group fd, inode marks, permission events and their answers.

The only module of the agent that issues fanotify syscalls. Constants and layouts come from
include/uapi/linux/fanotify.h; behaviour from Documentation/filesystems/fanotify (fanotify(7),
fanotify_init(2), fanotify_mark(2)). Permission events need CONFIG_FANOTIFY_ACCESS_PERMISSIONS (present
on the 6.18 hosts, docs/kernel.md) and CAP_SYS_ADMIN; FAN_OPEN_EXEC_PERM needs Linux >= 5.0.

Event fds are a deliberate hot-path exception to "raw ints never cross a module": each
:class:`EventMetadata` carries the fd the kernel opened for that one event, and the caller *takes* it
(must :meth:`FanotifyGroup.respond` if it is a permission event, then ``os.close`` it).
"""

from __future__ import annotations

import ctypes
import enum
import errno
import os
import struct
from dataclasses import dataclass

from pybpfguard.agent.errors import AgentError
from pybpfguard.bpf._sys import Fd

__all__ = [
    "FANOTIFY_METADATA_VERSION",
    "FAN_NOFD",
    "EventMetadata",
    "FanotifyError",
    "FanotifyGroup",
    "InitFlag",
    "MarkFlag",
    "Mask",
    "Response",
]


# include/uapi/linux/fanotify.h: flags for fanotify_init()
class InitFlag(enum.IntFlag):
    FAN_CLOEXEC = 0x00000001
    FAN_NONBLOCK = 0x00000002
    FAN_CLASS_NOTIF = 0x00000000
    FAN_CLASS_CONTENT = 0x00000004
    FAN_CLASS_PRE_CONTENT = 0x00000008
    FAN_UNLIMITED_QUEUE = 0x00000010
    FAN_UNLIMITED_MARKS = 0x00000020
    FAN_ENABLE_AUDIT = 0x00000040
    FAN_REPORT_PIDFD = 0x00000080
    FAN_REPORT_TID = 0x00000100
    FAN_REPORT_FID = 0x00000200


# include/uapi/linux/fanotify.h: flags for fanotify_mark() (FAN_MARK_INODE is 0)
class MarkFlag(enum.IntFlag):
    FAN_MARK_INODE = 0x00000000
    FAN_MARK_ADD = 0x00000001
    FAN_MARK_REMOVE = 0x00000002
    FAN_MARK_DONT_FOLLOW = 0x00000004
    FAN_MARK_ONLYDIR = 0x00000008
    FAN_MARK_MOUNT = 0x00000010
    FAN_MARK_IGNORED_MASK = 0x00000020
    FAN_MARK_IGNORED_SURV_MODIFY = 0x00000040
    FAN_MARK_FLUSH = 0x00000080
    FAN_MARK_FILESYSTEM = 0x00000100
    FAN_MARK_EVICTABLE = 0x00000200
    FAN_MARK_IGNORE = 0x00000400


# include/uapi/linux/fanotify.h: event mask bits (the subset this agent uses or may see)
class Mask(enum.IntFlag):
    FAN_ACCESS = 0x00000001
    FAN_MODIFY = 0x00000002
    FAN_CLOSE_WRITE = 0x00000008
    FAN_CLOSE_NOWRITE = 0x00000010
    FAN_OPEN = 0x00000020
    FAN_OPEN_EXEC = 0x00001000
    FAN_Q_OVERFLOW = 0x00004000
    FAN_OPEN_PERM = 0x00010000
    FAN_ACCESS_PERM = 0x00020000
    FAN_OPEN_EXEC_PERM = 0x00040000
    FAN_ONDIR = 0x40000000


# include/uapi/linux/fanotify.h: struct fanotify_response.response
class Response(enum.IntEnum):
    FAN_ALLOW = 0x01
    FAN_DENY = 0x02


FAN_NOFD = -1  # metadata.fd of an event without a file (queue overflow)
FANOTIFY_METADATA_VERSION = 3

# struct fanotify_event_metadata { __u32 event_len; __u8 vers; __u8 reserved; __u16 metadata_len;
#   __aligned_u64 mask; __s32 fd; __s32 pid; }  -- 24 bytes, include/uapi/linux/fanotify.h
_METADATA = struct.Struct("=IBBHQii")
# struct fanotify_response { __s32 fd; __u32 response; }  -- 8 bytes
_RESPONSE = struct.Struct("=iI")
METADATA_SIZE = _METADATA.size
RESPONSE_SIZE = _RESPONSE.size

_libc = ctypes.CDLL(None, use_errno=True)
_fanotify_init = _libc.fanotify_init
_fanotify_init.argtypes = (ctypes.c_uint, ctypes.c_uint)
_fanotify_init.restype = ctypes.c_int
_fanotify_mark = _libc.fanotify_mark
_fanotify_mark.argtypes = (ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p)
_fanotify_mark.restype = ctypes.c_int
AT_FDCWD = -100  # include/uapi/linux/fcntl.h


class FanotifyError(AgentError, OSError):
    """A fanotify syscall failed: ``.errno``, ``.call`` ("fanotify_mark"), ``.path`` when one was named."""

    def __init__(self, call: str, err: int, path: bytes | None = None, hint: str = "") -> None:
        where = f" {os.fsdecode(path)!r}" if path is not None else ""
        text = f"{call}{where}: {errno.errorcode.get(err, str(err))} ({os.strerror(err)})"
        if hint:
            text += f" ({hint})"
        super().__init__(err, text)
        self.call = call
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (FanotifyError, (self.call, self.errno, self.path))

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True, slots=True)
class EventMetadata:
    """One struct fanotify_event_metadata: ``mask`` (Mask bits), ``fd`` (taken by the caller; FAN_NOFD for
    an overflow), ``pid`` (tgid of the task that caused the event, in the listener's PID namespace, 0 if
    not visible there)."""

    mask: int
    fd: int
    pid: int


class FanotifyGroup:
    """An fanotify notification group (owns its fd; a context manager).

    Closing the group removes all its marks and makes the kernel answer every pending permission event
    FAN_ALLOW (fs/notify/fanotify/fanotify_user.c, fanotify_release): stopping fails open.
    """

    def __init__(self, flags: InitFlag, event_f_flags: int) -> None:
        """fanotify_init(2). Raises FanotifyError (EPERM without CAP_SYS_ADMIN, EINVAL for a flag the
        kernel does not know)."""
        fd = _fanotify_init(int(flags), event_f_flags)
        if fd < 0:
            err = ctypes.get_errno()
            hint = "needs CAP_SYS_ADMIN" if err == errno.EPERM else ""
            raise FanotifyError("fanotify_init", err, hint=hint)
        self.fd = Fd(fd, "fanotify group")

    def mark(self, flags: MarkFlag, mask: Mask, path: bytes, dirfd: int = AT_FDCWD) -> None:
        """fanotify_mark(2) on *path* (relative to *dirfd*). An inode mark (the default) follows the inode
        through hardlinks, renames and bind mounts. Raises FanotifyError naming the path (ENOENT: path
        gone; ENOSPC: mark limit; EINVAL: mask unsupported)."""
        if _fanotify_mark(self.fd.raw, int(flags), int(mask), dirfd, path) < 0:
            raise FanotifyError("fanotify_mark", ctypes.get_errno(), path)

    def read(self, size_bytes: int = 64 * METADATA_SIZE) -> list[EventMetadata]:
        """Read the queued events (at most *size_bytes* of metadata); [] when none are queued on a
        FAN_NONBLOCK group. Every returned fd (except FAN_NOFD) is taken by the caller.
        Raises FanotifyError on a version mismatch or a read error other than EAGAIN."""
        try:
            buf = os.read(self.fd.raw, size_bytes)
        except BlockingIOError:
            return []
        except OSError as err:
            raise FanotifyError("read", err.errno or errno.EIO) from err
        events: list[EventMetadata] = []
        off, end = 0, len(buf)
        while off + METADATA_SIZE <= end:
            event_len, vers, _, _, mask, fd, pid = _METADATA.unpack_from(buf, off)
            if vers != FANOTIFY_METADATA_VERSION or event_len < METADATA_SIZE:
                for e in events:  # do not leak the fds already decoded
                    if e.fd >= 0:
                        os.close(e.fd)
                raise FanotifyError("read", errno.EPROTO, hint=f"metadata version {vers}, len {event_len}")
            events.append(EventMetadata(mask, fd, pid))
            off += event_len
        return events

    def respond(self, event_fd: int, response: Response) -> bool:
        """Answer one permission event (write struct fanotify_response). Returns False when the kernel
        no longer waits for it (ENOENT: the opener was killed while waiting); raises FanotifyError
        otherwise."""
        try:
            os.write(self.fd.raw, _RESPONSE.pack(event_fd, response))
        except OSError as err:
            if err.errno == errno.ENOENT:
                return False
            raise FanotifyError("write fanotify_response", err.errno or errno.EIO) from err
        return True

    def fileno(self) -> int:
        return self.fd.raw

    def close(self) -> None:
        """Close the group (idempotent): marks go, pending permission events are allowed by the kernel."""
        self.fd.close()

    def __enter__(self) -> FanotifyGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
