"""A minimal io_uring client (ctypes, one IORING_OP_OPENAT) for case 13 of cases/AGENT.md.

Layouts from include/uapi/linux/io_uring.h: struct io_uring_params (120 bytes) with struct
io_sqring_offsets and io_cqring_offsets (40 bytes each), struct io_uring_sqe (64 bytes), struct
io_uring_cqe (16 bytes). Syscalls io_uring_setup = 425, io_uring_enter = 426 (x86_64 and the generic
table alike).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

NR_io_uring_setup, NR_io_uring_enter = 425, 426
IORING_OFF_SQ_RING, IORING_OFF_CQ_RING, IORING_OFF_SQES = 0, 0x8000000, 0x10000000
IORING_ENTER_GETEVENTS = 1
IORING_OP_OPENAT = 18
AT_FDCWD = -100
# 7 u32 + resv[3]; io_sqring_offsets: 8 u32 + u64 user_addr; io_cqring_offsets: 8 u32 + u64 user_addr
_PARAMS = struct.Struct("=10I8IQ8IQ")  # 120 bytes
_SQE = struct.Struct("=BBHiQQIIQ24x")  # opcode flags ioprio fd off addr len open_flags user_data
_CQE = struct.Struct("=QiI")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _sys(nr: int, *args: int | ctypes.c_void_p | ctypes.Array) -> int:  # type: ignore[type-arg]
    ret = _libc.syscall(ctypes.c_long(nr), *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def uring_openat(path: bytes) -> int:
    """Open *path* O_RDONLY through one IORING_OP_OPENAT; returns the fd or -errno from the CQE."""
    params = ctypes.create_string_buffer(_PARAMS.size)
    ring_fd = _sys(NR_io_uring_setup, ctypes.c_uint(4), params)
    try:
        p = _PARAMS.unpack(params.raw)
        sq_entries, cq_entries = p[0], p[1]
        _, sq_tail, sq_mask, _, _, _, sq_array = p[10:17]
        cq_head, cq_tail, cq_mask, _, _, cqes = p[19:25]
        sq_len = sq_array + sq_entries * 4
        cq_len = cqes + cq_entries * _CQE.size
        sq = mmap.mmap(ring_fd, sq_len, offset=IORING_OFF_SQ_RING)
        cq = mmap.mmap(ring_fd, cq_len, offset=IORING_OFF_CQ_RING)
        sqes = mmap.mmap(ring_fd, sq_entries * _SQE.size, offset=IORING_OFF_SQES)
        try:
            name = ctypes.create_string_buffer(path)
            sqes[0:_SQE.size] = _SQE.pack(IORING_OP_OPENAT, 0, 0, AT_FDCWD, 0, ctypes.addressof(name),
                                          0, os.O_RDONLY | os.O_CLOEXEC, 7)
            tail = struct.unpack_from("=I", sq, sq_tail)[0]
            mask = struct.unpack_from("=I", sq, sq_mask)[0]
            struct.pack_into("=I", sq, sq_array + 4 * (tail & mask), 0)
            struct.pack_into("=I", sq, sq_tail, tail + 1)
            _sys(NR_io_uring_enter, ring_fd, 1, 1, IORING_ENTER_GETEVENTS, None, 0)
            head = struct.unpack_from("=I", cq, cq_head)[0]
            assert head != struct.unpack_from("=I", cq, cq_tail)[0], "no completion"
            cmask = struct.unpack_from("=I", cq, cq_mask)[0]
            user_data, res, _ = _CQE.unpack_from(cq, cqes + (head & cmask) * _CQE.size)
            assert user_data == 7
            struct.pack_into("=I", cq, cq_head, head + 1)
            return res
        finally:
            sq.close()
            cq.close()
            sqes.close()
    finally:
        os.close(ring_fd)
