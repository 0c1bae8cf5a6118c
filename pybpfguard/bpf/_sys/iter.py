"""BPF_ITER_CREATE (include/uapi/linux/bpf.h ``iter_create``): an fd whose read() runs a BPF iterator."""

from __future__ import annotations

import ctypes

from pybpfguard.bpf._sys.syscall import BpfCmd, Fd, bpf


class IterCreateAttr(ctypes.Structure):
    _fields_ = [("link_fd", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


def iter_create(link: Fd) -> Fd:
    """BPF_ITER_CREATE on an iterator *link* (borrowed); return the owned, readable iterator fd (Linux 5.8)."""
    return Fd(bpf(BpfCmd.BPF_ITER_CREATE, IterCreateAttr(link_fd=link.raw)), "bpf iterator")
