"""Attr layouts and thin wrappers for the core commands: map create, program load, test run, pin, get.

Layouts follow ``union bpf_attr`` in include/uapi/linux/bpf.h (Linux 6.18); the kernel accepts a shorter
attr from older userspace and a longer one when the extra bytes are zero, so one layout serves all
kernels we support. Pointer fields are ``__aligned_u64`` (``c_uint64``).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Any

from pybpfguard.bpf._sys.syscall import BpfCmd, Fd, bpf
from pybpfguard.bpf.errors import InvalidArgumentError

c_u32 = ctypes.c_uint32
c_u64 = ctypes.c_uint64
c_s32 = ctypes.c_int32

BPF_OBJ_NAME_LEN = 16  # include/uapi/linux/bpf.h


class MapCreateAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_MAP_CREATE."""

    _fields_ = [
        ("map_type", c_u32),
        ("key_size", c_u32),
        ("value_size", c_u32),
        ("max_entries", c_u32),
        ("map_flags", c_u32),
        ("inner_map_fd", c_u32),
        ("numa_node", c_u32),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("map_ifindex", c_u32),
        ("btf_fd", c_u32),
        ("btf_key_type_id", c_u32),
        ("btf_value_type_id", c_u32),
        ("btf_vmlinux_value_type_id", c_u32),
        ("map_extra", c_u64),
        ("value_type_btf_obj_fd", c_s32),
        ("map_token_fd", c_s32),
    ]


class ProgLoadAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_PROG_LOAD. ``log_true_size`` sits at offset 140."""

    _fields_ = [
        ("prog_type", c_u32),
        ("insn_cnt", c_u32),
        ("insns", c_u64),
        ("license", c_u64),
        ("log_level", c_u32),
        ("log_size", c_u32),
        ("log_buf", c_u64),
        ("kern_version", c_u32),
        ("prog_flags", c_u32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", c_u32),
        ("expected_attach_type", c_u32),
        ("prog_btf_fd", c_u32),
        ("func_info_rec_size", c_u32),
        ("func_info", c_u64),
        ("func_info_cnt", c_u32),
        ("line_info_rec_size", c_u32),
        ("line_info", c_u64),
        ("line_info_cnt", c_u32),
        ("attach_btf_id", c_u32),
        ("attach_prog_fd", c_u32),  # union with attach_btf_obj_fd
        ("core_relo_cnt", c_u32),
        ("fd_array", c_u64),
        ("core_relos", c_u64),
        ("core_relo_rec_size", c_u32),
        ("log_true_size", c_u32),
        ("prog_token_fd", c_s32),
        ("fd_array_cnt", c_u32),
    ]


class TestRunAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_PROG_TEST_RUN (``test`` member)."""

    __test__ = False  # not a pytest class
    _fields_ = [
        ("prog_fd", c_u32),
        ("retval", c_u32),
        ("data_size_in", c_u32),
        ("data_size_out", c_u32),
        ("data_in", c_u64),
        ("data_out", c_u64),
        ("repeat", c_u32),
        ("duration", c_u32),
        ("ctx_size_in", c_u32),
        ("ctx_size_out", c_u32),
        ("ctx_in", c_u64),
        ("ctx_out", c_u64),
        ("flags", c_u32),
        ("cpu", c_u32),
        ("batch_size", c_u32),
    ]


class ObjAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_OBJ_PIN / BPF_OBJ_GET."""

    _fields_ = [
        ("pathname", c_u64),
        ("bpf_fd", c_u32),
        ("file_flags", c_u32),
        ("path_fd", c_s32),
    ]


def _name(name: bytes | str) -> bytes:
    raw = name.encode() if isinstance(name, str) else name
    if len(raw) >= BPF_OBJ_NAME_LEN:
        raise InvalidArgumentError(f"object name {raw!r} is {len(raw)} bytes; the kernel keeps at most 15")
    return raw


def map_create(
    map_type: int,
    key_size: int,
    value_size: int,
    max_entries: int,
    map_flags: int = 0,
    *,
    map_name: bytes | str = b"",
    inner_map_fd: Fd | None = None,
    map_extra: int = 0,
    **extra: int,
) -> Fd:
    """BPF_MAP_CREATE; return the owned map fd. *extra* sets further ``MapCreateAttr`` fields by name."""
    attr = MapCreateAttr(
        map_type=map_type,
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        map_flags=map_flags,
        map_name=_name(map_name),
        inner_map_fd=inner_map_fd.raw if inner_map_fd else 0,
        map_extra=map_extra,
        **extra,
    )
    return Fd(bpf(BpfCmd.BPF_MAP_CREATE, attr), f"map {_name(map_name).decode(errors='replace')}")


def prog_load(
    prog_type: int,
    insns: bytes,
    license: bytes | str = b"GPL",
    *,
    log_level: int = 0,
    log_buf: ctypes.Array[ctypes.c_char] | None = None,
    prog_name: bytes | str = b"",
    expected_attach_type: int = 0,
    attach_btf_id: int = 0,
    prog_flags: int = 0,
    attr_out: list[ProgLoadAttr] | None = None,
    **extra: Any,
) -> Fd:
    """BPF_PROG_LOAD one program; return its owned fd.

    *insns* is the little-endian instruction stream (8 bytes a slot). With *log_buf* (a ctypes char
    buffer) and *log_level* > 0 the verifier writes its log there. If *attr_out* is a list, the attr is
    appended to it so the caller can read ``log_true_size`` after a failure. *extra* sets further
    ``ProgLoadAttr`` fields (``prog_btf_fd``, ``func_info``, ``func_info_cnt``, ``fd_array`` ...).
    Raises SyscallError subclasses; the verifier's words are in *log_buf*, not in the exception.
    """
    if len(insns) % 8:
        raise InvalidArgumentError(f"instruction stream is {len(insns)} bytes, not a multiple of 8")
    code = ctypes.create_string_buffer(bytes(insns), len(insns))
    lic = ctypes.create_string_buffer(license.encode() if isinstance(license, str) else license)
    attr = ProgLoadAttr(
        prog_type=prog_type,
        insn_cnt=len(insns) // 8,
        insns=ctypes.addressof(code),
        license=ctypes.addressof(lic),
        log_level=log_level if log_buf is not None else 0,
        log_size=len(log_buf) if log_buf is not None else 0,
        log_buf=ctypes.addressof(log_buf) if log_buf is not None else 0,
        prog_name=_name(prog_name),
        expected_attach_type=expected_attach_type,
        attach_btf_id=attach_btf_id,
        prog_flags=prog_flags,
        **extra,
    )
    if attr_out is not None:
        attr_out.append(attr)
    return Fd(bpf(BpfCmd.BPF_PROG_LOAD, attr), f"prog {_name(prog_name).decode(errors='replace')}")


@dataclass(frozen=True, slots=True)
class TestRunResult:
    """What BPF_PROG_TEST_RUN returned: ``retval`` (the program's r0 as u32), ``duration_ns`` (mean per
    repetition, ns), ``data_out`` (the packet after the program, when asked for)."""

    __test__ = False
    retval: int
    duration_ns: int
    data_out: bytes


def prog_test_run(
    prog: Fd,
    data_in: bytes = b"",
    *,
    repeat: int = 1,
    ctx_in: bytes | None = None,
    data_out_size: int = 0,
    flags: int = 0,
) -> TestRunResult:
    """BPF_PROG_TEST_RUN *prog* on *data_in* (*repeat* times). Socket filters need >= 14 bytes (ETH_HLEN)."""
    din = ctypes.create_string_buffer(data_in, len(data_in)) if data_in else None
    dout = ctypes.create_string_buffer(data_out_size) if data_out_size else None
    cin = ctypes.create_string_buffer(ctx_in, len(ctx_in)) if ctx_in else None
    attr = TestRunAttr(
        prog_fd=prog.raw,
        data_size_in=len(data_in),
        data_in=ctypes.addressof(din) if din is not None else 0,
        data_size_out=data_out_size,
        data_out=ctypes.addressof(dout) if dout is not None else 0,
        repeat=repeat,
        ctx_size_in=len(ctx_in) if ctx_in else 0,
        ctx_in=ctypes.addressof(cin) if cin is not None else 0,
        flags=flags,
    )
    bpf(BpfCmd.BPF_PROG_TEST_RUN, attr)
    out = dout.raw[: attr.data_size_out] if dout is not None else b""
    return TestRunResult(attr.retval, attr.duration, out)


def obj_pin(fd: Fd, path: str | os.PathLike[str]) -> None:
    """BPF_OBJ_PIN *fd* at *path* (which must be on a bpffs)."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    bpf(BpfCmd.BPF_OBJ_PIN, ObjAttr(pathname=ctypes.addressof(name), bpf_fd=fd.raw), hint=str(path))


BPF_F_RDONLY = 1 << 3  # include/uapi/linux/bpf.h: file_flags for BPF_OBJ_GET
BPF_F_WRONLY = 1 << 4


def obj_get(path: str | os.PathLike[str], file_flags: int = 0) -> Fd:
    """BPF_OBJ_GET: open the object pinned at *path*; return an owned fd."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    attr = ObjAttr(pathname=ctypes.addressof(name), file_flags=file_flags)
    return Fd(bpf(BpfCmd.BPF_OBJ_GET, attr, hint=str(path)), f"pinned {os.fspath(path)}")
