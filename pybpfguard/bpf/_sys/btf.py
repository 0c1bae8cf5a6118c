"""Attr layouts and thin wrappers for the BTF commands: BPF_BTF_LOAD, BPF_BTF_GET_FD_BY_ID, and
BPF_OBJ_GET_INFO_BY_FD for a BTF object.

Layouts from ``union bpf_attr`` and ``struct bpf_btf_info`` in include/uapi/linux/bpf.h (Linux 6.18).
BPF_BTF_LOAD needs Linux 5.0; ``btf_log_true_size`` 6.4 (older kernels leave it 0).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from pybpfguard.bpf._sys.syscall import BpfCmd, Fd, bpf

c_u32 = ctypes.c_uint32
c_u64 = ctypes.c_uint64
c_s32 = ctypes.c_int32


class BtfLoadAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_BTF_LOAD."""

    _fields_ = [
        ("btf", c_u64),
        ("btf_log_buf", c_u64),
        ("btf_size", c_u32),
        ("btf_log_size", c_u32),
        ("btf_log_level", c_u32),
        ("btf_log_true_size", c_u32),
        ("btf_flags", c_u32),
        ("btf_token_fd", c_s32),
    ]


class GetFdByIdAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_*_GET_FD_BY_ID (``btf_id`` shares the first u32 with ``prog_id``...)."""

    _fields_ = [("btf_id", c_u32), ("next_id", c_u32), ("open_flags", c_u32)]


class InfoByFdAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_OBJ_GET_INFO_BY_FD (``info``)."""

    _fields_ = [("bpf_fd", c_u32), ("info_len", c_u32), ("info", c_u64)]


class BtfInfo(ctypes.Structure):
    """``struct bpf_btf_info``: ``btf``/``btf_size`` (bytes) receive the blob, ``name``/``name_len`` the
    name (modules' BTF: the module name; vmlinux: "vmlinux"), ``kernel_btf`` 1 for kernel BTF."""

    _fields_ = [
        ("btf", c_u64),
        ("btf_size", c_u32),
        ("id", c_u32),
        ("name", c_u64),
        ("name_len", c_u32),
        ("kernel_btf", c_u32),
    ]


def btf_load(
    blob: bytes,
    *,
    log_level: int = 0,
    log_buf: ctypes.Array[ctypes.c_char] | None = None,
    attr_out: list[BtfLoadAttr] | None = None,
) -> Fd:
    """BPF_BTF_LOAD *blob*; return the owned BTF fd. With *log_buf* and *log_level* > 0 the kernel's BTF
    verifier writes its log there; if *attr_out* is a list the attr is appended (``btf_log_true_size``)."""
    data = ctypes.create_string_buffer(bytes(blob), len(blob))
    attr = BtfLoadAttr(
        btf=ctypes.addressof(data),
        btf_size=len(blob),
        btf_log_buf=ctypes.addressof(log_buf) if log_buf is not None else 0,
        btf_log_size=len(log_buf) if log_buf is not None else 0,
        btf_log_level=log_level if log_buf is not None else 0,
    )
    if attr_out is not None:
        attr_out.append(attr)
    return Fd(bpf(BpfCmd.BPF_BTF_LOAD, attr), "btf")


def btf_get_fd_by_id(btf_id: int) -> Fd:
    """BPF_BTF_GET_FD_BY_ID: an owned fd for the loaded BTF object *btf_id*. Raises KeyNotFoundError."""
    return Fd(bpf(BpfCmd.BPF_BTF_GET_FD_BY_ID, GetFdByIdAttr(btf_id=btf_id), hint=f"btf id {btf_id}"), "btf")


@dataclass(frozen=True, slots=True)
class BtfObjectInfo:
    """What BPF_OBJ_GET_INFO_BY_FD says of a BTF object: ``id``, ``btf_size`` (bytes), ``name``
    ("vmlinux", a module's name, or "" for a program's BTF), ``kernel_btf``, ``data`` (the blob, if asked)."""

    id: int
    btf_size: int
    name: str
    kernel_btf: bool
    data: bytes


def btf_get_info(fd: Fd, *, with_data: bool = False) -> BtfObjectInfo:
    """BPF_OBJ_GET_INFO_BY_FD on a BTF fd (borrowed); with *with_data* also copies the blob out."""
    name = ctypes.create_string_buffer(64)
    info = BtfInfo(name=ctypes.addressof(name), name_len=len(name))
    bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, InfoByFdAttr(fd.raw, ctypes.sizeof(info), ctypes.addressof(info)))
    data = b""
    if with_data:
        buf = ctypes.create_string_buffer(info.btf_size)
        info = BtfInfo(btf=ctypes.addressof(buf), btf_size=len(buf), name=ctypes.addressof(name), name_len=len(name))
        bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, InfoByFdAttr(fd.raw, ctypes.sizeof(info), ctypes.addressof(info)))
        data = buf.raw[: info.btf_size]
    return BtfObjectInfo(info.id, info.btf_size, name.value.decode(), bool(info.kernel_btf), data)
