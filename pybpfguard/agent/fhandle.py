"""File handles: name_to_handle_at(2) and open_by_handle_at(2) through ctypes (Python's ``os`` has neither).

A file handle names an inode independently of any path: it survives renames and the removal of every
other name, and goes stale once the inode is freed (the kernel checks the inode generation). Layout
``struct file_handle { __u32 handle_bytes; int handle_type; unsigned char f_handle[]; }`` and
``MAX_HANDLE_SZ`` from include/linux/exportfs.h and include/uapi/linux/fcntl.h; the calls from
fs/fhandle.c. ``open_by_handle_at`` needs CAP_DAC_READ_SEARCH.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass

MAX_HANDLE_SZ = 128  # include/linux/exportfs.h
AT_EMPTY_PATH = 0x1000  # include/uapi/linux/fcntl.h


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint32), ("handle_type", ctypes.c_int32),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ)]


_libc = ctypes.CDLL(None, use_errno=True)
_name_to_handle_at = _libc.name_to_handle_at
_name_to_handle_at.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_FileHandle),
                               ctypes.POINTER(ctypes.c_int), ctypes.c_int)
_name_to_handle_at.restype = ctypes.c_int
_open_by_handle_at = _libc.open_by_handle_at
_open_by_handle_at.argtypes = (ctypes.c_int, ctypes.POINTER(_FileHandle), ctypes.c_int)
_open_by_handle_at.restype = ctypes.c_int


@dataclass(frozen=True, slots=True)
class FileHandle:
    """An opaque handle: ``handle_type`` (the filesystem's FILEID_* type) and ``data`` (at most 128 bytes)."""

    handle_type: int
    data: bytes

    def _struct(self) -> _FileHandle:
        fh = _FileHandle(handle_bytes=len(self.data), handle_type=self.handle_type)
        ctypes.memmove(fh.f_handle, self.data, len(self.data))
        return fh


def name_to_handle_at(fd: int) -> tuple[FileHandle, int]:
    """The handle of the file open as *fd* (an ``O_PATH`` fd will do) and the id of its mount (as in
    /proc/self/mountinfo). Raises OSError: EOPNOTSUPP when the filesystem has no file handles."""
    fh = _FileHandle(handle_bytes=MAX_HANDLE_SZ)
    mount_id = ctypes.c_int()
    if _name_to_handle_at(fd, b"", ctypes.byref(fh), ctypes.byref(mount_id), AT_EMPTY_PATH) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"name_to_handle_at: {os.strerror(err)}")
    return FileHandle(fh.handle_type, bytes(fh.f_handle[: fh.handle_bytes])), mount_id.value


def open_by_handle_at(mount_fd: int, handle: FileHandle, flags: int = os.O_PATH | os.O_CLOEXEC) -> int:
    """Open the inode *handle* names on the filesystem *mount_fd* is on; returns a new fd (the caller
    closes it). Raises OSError: ESTALE when the inode is gone, EPERM without CAP_DAC_READ_SEARCH,
    EINVAL for a malformed handle."""
    if len(handle.data) > MAX_HANDLE_SZ:
        raise OSError(errno.EINVAL, f"open_by_handle_at: handle of {len(handle.data)} bytes, limit {MAX_HANDLE_SZ}")
    fh = handle._struct()
    fd = _open_by_handle_at(mount_fd, ctypes.byref(fh), flags)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"open_by_handle_at: {os.strerror(err)}")
    return fd
