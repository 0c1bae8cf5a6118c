"""Attr layouts and thin wrappers for the map commands other than BPF_MAP_CREATE (which is in ``core``).

Layouts follow ``union bpf_attr`` and ``struct bpf_map_info`` in include/uapi/linux/bpf.h (Linux 6.18).
Buffers are ctypes arrays owned by the caller: the wrappers pass their addresses and the kernel reads or
writes them during the call. Every wrapper takes *what* (e.g. ``"map 'deny_inode'"``), which becomes the
error's hint so a failure names the map.
"""

from __future__ import annotations

import ctypes
import mmap as _mmap

from pybpfguard.bpf._sys.syscall import BpfCmd, Fd, bpf, ptr
from pybpfguard.bpf.errors import SyscallError

c_u32 = ctypes.c_uint32
c_u64 = ctypes.c_uint64
Buffer = ctypes.Array  # type: ignore[type-arg]


class MapElemAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_MAP_*_ELEM and BPF_MAP_GET_NEXT_KEY (``value`` is ``next_key`` there)."""

    _fields_ = [
        ("map_fd", c_u32),
        ("key", c_u64),  # __aligned_u64: ctypes pads map_fd to offset 8 as the header does
        ("value", c_u64),
        ("flags", c_u64),
    ]


class MapBatchAttr(ctypes.Structure):
    """``union bpf_attr`` ``batch`` member, for BPF_MAP_{LOOKUP,LOOKUP_AND_DELETE,UPDATE,DELETE}_BATCH."""

    _fields_ = [
        ("in_batch", c_u64),
        ("out_batch", c_u64),
        ("keys", c_u64),
        ("values", c_u64),
        ("count", c_u32),
        ("map_fd", c_u32),
        ("elem_flags", c_u64),
        ("flags", c_u64),
    ]


class GetIdAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_*_GET_NEXT_ID / BPF_*_GET_FD_BY_ID (``start_id`` is ``map_id`` there)."""

    _fields_ = [
        ("start_id", c_u32),
        ("next_id", c_u32),
        ("open_flags", c_u32),
    ]


class InfoAttr(ctypes.Structure):
    """``union bpf_attr`` ``info`` member, for BPF_OBJ_GET_INFO_BY_FD."""

    _fields_ = [
        ("bpf_fd", c_u32),
        ("info_len", c_u32),
        ("info", c_u64),
    ]


class MapFdAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_MAP_FREEZE: just ``map_fd``."""

    _fields_ = [("map_fd", c_u32)]


class BpfMapInfo(ctypes.Structure):
    """``struct bpf_map_info`` up to ``map_extra`` (Linux 5.16); newer kernels fill only what we ask for."""

    _fields_ = [
        ("type", c_u32),
        ("id", c_u32),
        ("key_size", c_u32),
        ("value_size", c_u32),
        ("max_entries", c_u32),
        ("map_flags", c_u32),
        ("name", ctypes.c_char * 16),
        ("ifindex", c_u32),
        ("btf_vmlinux_value_type_id", c_u32),
        ("netns_dev", c_u64),
        ("netns_ino", c_u64),
        ("btf_id", c_u32),
        ("btf_key_type_id", c_u32),
        ("btf_value_type_id", c_u32),
        ("btf_vmlinux_id", c_u32),
        ("map_extra", c_u64),
    ]


class ElemCall:
    """One map's element commands with a key buffer, a value buffer and an attr built once (the hot path).

    Not thread-safe: the caller serialises calls (``Map`` holds a lock). *fd* is borrowed and must outlive
    this object. ``key``/``value`` are bytes of exactly the map's sizes (None for keyless maps); results are
    the bytes the kernel wrote into the value buffer.
    """

    __slots__ = ("_attr", "_fd", "_key", "_value", "_value_addr", "what")

    def __init__(self, fd: Fd, key_size: int, value_size: int, what: str) -> None:
        self._key = ctypes.create_string_buffer(max(key_size, 1))
        self._value = ctypes.create_string_buffer(max(value_size, 1))
        self._value_addr = ctypes.addressof(self._value)
        self._attr = MapElemAttr(map_fd=fd.raw)
        self._fd = fd
        self.what = what

    def _call(
        self, cmd: BpfCmd, key: bytes | None, value: bytes | None, flags: int, *, uses_value: bool = True
    ) -> None:
        attr = self._attr
        attr.map_fd = self._fd.raw  # read each call: a closed Fd raises instead of reaching a reused number
        # The kernel refuses non-zero attr bytes past a command's last field (CHECK_ATTR): delete has no value.
        attr.value = self._value_addr if uses_value else 0
        if key is None:
            attr.key = 0
        else:
            self._key.raw = key
            attr.key = ctypes.addressof(self._key)
        if value is not None:
            self._value.raw = value
        attr.flags = flags
        bpf(cmd, attr, hint=self.what)

    def lookup(self, key: bytes | None, flags: int = 0) -> bytes:
        """BPF_MAP_LOOKUP_ELEM; KeyNotFoundError if absent."""
        self._call(BpfCmd.BPF_MAP_LOOKUP_ELEM, key, None, flags)
        return self._value.raw

    def update(self, key: bytes | None, value: bytes, flags: int = 0) -> None:
        """BPF_MAP_UPDATE_ELEM with *flags*."""
        self._call(BpfCmd.BPF_MAP_UPDATE_ELEM, key, value, flags)

    def peek(self, value: bytes) -> None:
        """BPF_MAP_LOOKUP_ELEM with no key and *value* as input (BLOOM_FILTER); ENOENT if absent."""
        self._call(BpfCmd.BPF_MAP_LOOKUP_ELEM, None, value, 0)

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        """BPF_MAP_LOOKUP_AND_DELETE_ELEM."""
        self._call(BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM, key, None, flags)
        return self._value.raw

    def delete(self, key: bytes) -> None:
        """BPF_MAP_DELETE_ELEM."""
        self._call(BpfCmd.BPF_MAP_DELETE_ELEM, key, None, 0, uses_value=False)


def map_get_next_key(fd: Fd, key: Buffer | None, next_key: Buffer, what: str = "") -> bool:
    """BPF_MAP_GET_NEXT_KEY: write the key after *key* (the first key if *key* is None or absent) into
    *next_key*; return False at the end of the map (ENOENT)."""
    attr = MapElemAttr(map_fd=fd.raw, key=ptr(key), value=ptr(next_key))
    try:
        bpf(BpfCmd.BPF_MAP_GET_NEXT_KEY, attr, hint=what)
    except KeyError:  # KeyNotFoundError: ENOENT is how the kernel says "no next key"
        return False
    return True


def map_freeze(fd: Fd, what: str = "") -> None:
    """BPF_MAP_FREEZE (Linux 5.2): syscall-side writes fail with EPERM afterwards; programs still write
    unless the map has BPF_F_RDONLY_PROG."""
    bpf(BpfCmd.BPF_MAP_FREEZE, MapFdAttr(map_fd=fd.raw), hint=what)


def map_batch(
    cmd: BpfCmd,
    fd: Fd,
    *,
    keys: Buffer | None,
    values: Buffer | None,
    count: int,
    in_batch: Buffer | None = None,
    out_batch: Buffer | None = None,
    elem_flags: int = 0,
    what: str = "",
) -> tuple[int, SyscallError | None]:
    """One BPF_MAP_*_BATCH call (Linux 5.6) on *count* elements.

    Return ``(done, error)``: ``done`` is the kernel's ``count`` after the call (elements processed, written
    back even when the call fails, e.g. ENOENT at the end of a lookup or ENOSPC for a bucket larger than
    *count*), ``error`` the SyscallError or None. The caller decides which errors end the operation.
    """
    attr = MapBatchAttr(
        in_batch=ptr(in_batch),
        out_batch=ptr(out_batch),
        keys=ptr(keys),
        values=ptr(values),
        count=count,
        map_fd=fd.raw,
        elem_flags=elem_flags,
    )
    try:
        bpf(cmd, attr, hint=what)
    except SyscallError as err:
        return attr.count, err
    return attr.count, None


def map_get_fd_by_id(map_id: int, open_flags: int = 0) -> Fd:
    """BPF_MAP_GET_FD_BY_ID: an owned fd for the map with kernel id *map_id* (ENOENT: no such map)."""
    fd = bpf(BpfCmd.BPF_MAP_GET_FD_BY_ID, GetIdAttr(start_id=map_id, open_flags=open_flags), hint=f"map id {map_id}")
    return Fd(fd, f"map id {map_id}")


def map_get_info(fd: Fd, what: str = "") -> BpfMapInfo:
    """BPF_OBJ_GET_INFO_BY_FD on a map fd."""
    info = BpfMapInfo()
    attr = InfoAttr(bpf_fd=fd.raw, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, attr, hint=what)
    return info


def map_mmap(fd: Fd, length: int, *, writable: bool) -> _mmap.mmap:
    """mmap the value area of a BPF_F_MMAPABLE array (kernel/bpf/arraymap.c ``array_map_mmap``), shared.

    *length* in bytes, a page multiple. A frozen map refuses a writable mapping with EPERM.
    """
    prot = _mmap.PROT_READ | (_mmap.PROT_WRITE if writable else 0)
    return _mmap.mmap(fd.raw, length, _mmap.MAP_SHARED, prot)
