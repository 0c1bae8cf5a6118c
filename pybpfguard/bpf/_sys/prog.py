"""Program commands beyond load and test run: object info, ids, and the legacy ``BPF_PROG_ATTACH``.

Layouts follow ``union bpf_attr`` and ``struct bpf_prog_info`` in include/uapi/linux/bpf.h (Linux 6.18).
``BPF_OBJ_GET_INFO_BY_FD`` is the same command for every object kind (prog, map, btf, link): the kernel
copies ``min(info_len, sizeof its struct)`` bytes, so a shorter struct from us is fine on newer kernels.
"""

from __future__ import annotations

import ctypes
import enum
from typing import TypeVar

from pybpfguard.bpf._sys.core import BPF_OBJ_NAME_LEN
from pybpfguard.bpf._sys.syscall import BpfCmd, Fd, bpf

c_u8 = ctypes.c_uint8
c_u32 = ctypes.c_uint32
c_u64 = ctypes.c_uint64

BPF_TAG_SIZE = 8  # include/uapi/linux/bpf.h


class InfoAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_OBJ_GET_INFO_BY_FD (``info`` member)."""

    _fields_ = [("bpf_fd", c_u32), ("info_len", c_u32), ("info", c_u64)]


class IdAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID (``start_id``/``prog_id``/``link_id``
    share the first word)."""

    _fields_ = [("id", c_u32), ("next_id", c_u32), ("open_flags", c_u32)]


class ProgInfo(ctypes.Structure):
    """include/uapi/linux/bpf.h: struct bpf_prog_info. ``load_time`` is ns since boot (CLOCK_BOOTTIME)."""

    _fields_ = [
        ("type", c_u32),
        ("id", c_u32),
        ("tag", c_u8 * BPF_TAG_SIZE),
        ("jited_prog_len", c_u32),
        ("xlated_prog_len", c_u32),
        ("jited_prog_insns", c_u64),
        ("xlated_prog_insns", c_u64),
        ("load_time", c_u64),
        ("created_by_uid", c_u32),
        ("nr_map_ids", c_u32),
        ("map_ids", c_u64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", c_u32),
        ("gpl_compatible", c_u32),  # bit 0; bits 1..31 are padding
        ("netns_dev", c_u64),
        ("netns_ino", c_u64),
        ("nr_jited_ksyms", c_u32),
        ("nr_jited_func_lens", c_u32),
        ("jited_ksyms", c_u64),
        ("jited_func_lens", c_u64),
        ("btf_id", c_u32),
        ("func_info_rec_size", c_u32),
        ("func_info", c_u64),
        ("nr_func_info", c_u32),
        ("nr_line_info", c_u32),
        ("line_info", c_u64),
        ("jited_line_info", c_u64),
        ("nr_jited_line_info", c_u32),
        ("line_info_rec_size", c_u32),
        ("jited_line_info_rec_size", c_u32),
        ("nr_prog_tags", c_u32),
        ("prog_tags", c_u64),
        ("run_time_ns", c_u64),
        ("run_cnt", c_u64),
        ("recursion_misses", c_u64),
        ("verified_insns", c_u32),
        ("attach_btf_obj_id", c_u32),
        ("attach_btf_id", c_u32),
        ("_pad", c_u32),
    ]


_Info = TypeVar("_Info", bound=ctypes.Structure)


def obj_get_info_by_fd(fd: Fd, info: _Info) -> _Info:
    """BPF_OBJ_GET_INFO_BY_FD: fill *info* (a ``bpf_*_info`` struct matching *fd*'s kind) and return it.

    Pointer fields set in *info* beforehand (e.g. ``raw_tracepoint.tp_name``) are filled by the kernel too.
    """
    attr = InfoAttr(bpf_fd=fd.raw, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, attr)
    return info


def get_next_id(cmd: BpfCmd, start_id: int) -> int | None:
    """BPF_PROG_GET_NEXT_ID / BPF_MAP_GET_NEXT_ID / BPF_LINK_GET_NEXT_ID: the next id after *start_id*,
    or None when there is none (the kernel answers ENOENT)."""
    attr = IdAttr(id=start_id)
    try:
        bpf(cmd, attr)
    except KeyError:  # KeyNotFoundError: ENOENT ends the walk
        return None
    return int(attr.next_id)


def get_fd_by_id(cmd: BpfCmd, obj_id: int, what: str) -> Fd:
    """BPF_PROG_GET_FD_BY_ID / BPF_LINK_GET_FD_BY_ID / ...: an owned fd for the object with id *obj_id*.
    Raises KeyNotFoundError (ENOENT) when no such object exists any more."""
    return Fd(bpf(cmd, IdAttr(id=obj_id), hint=f"id {obj_id}"), f"{what} id {obj_id}")


class ProgAttachFlags(enum.IntFlag):
    """include/uapi/linux/bpf.h: ``attach_flags`` of BPF_PROG_ATTACH (cgroup programs)."""

    BPF_F_ALLOW_OVERRIDE = 1 << 0
    BPF_F_ALLOW_MULTI = 1 << 1
    BPF_F_REPLACE = 1 << 2


class ProgAttachAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_PROG_ATTACH / BPF_PROG_DETACH."""

    _fields_ = [
        ("target_fd", c_u32),
        ("attach_bpf_fd", c_u32),
        ("attach_type", c_u32),
        ("attach_flags", c_u32),
        ("replace_bpf_fd", c_u32),
        ("relative_fd", c_u32),
        ("expected_revision", c_u64),
    ]


def prog_attach(target: Fd, prog: Fd, attach_type: int, attach_flags: int = 0) -> None:
    """BPF_PROG_ATTACH *prog* (borrowed) to *target* (a cgroup dir fd, borrowed) at *attach_type*.

    The attachment outlives both fds; undo it with :func:`prog_detach`.
    """
    attr = ProgAttachAttr(
        target_fd=target.raw, attach_bpf_fd=prog.raw, attach_type=attach_type, attach_flags=attach_flags
    )
    bpf(BpfCmd.BPF_PROG_ATTACH, attr)


def prog_detach(target: Fd, prog: Fd, attach_type: int) -> None:
    """BPF_PROG_DETACH: remove *prog* from *target* at *attach_type* (both fds borrowed)."""
    bpf(BpfCmd.BPF_PROG_DETACH, ProgAttachAttr(target_fd=target.raw, attach_bpf_fd=prog.raw, attach_type=attach_type))
