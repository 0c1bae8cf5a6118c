"""Timing loops the benchmarks share (no pytest here: the LSM benchmark also runs it inside the VM guest)."""

from __future__ import annotations

import os
import time


def open_times_ns(path: str | bytes | os.PathLike[str], n: int) -> list[int]:
    """Wall time in ns (``perf_counter_ns``) of each of *n* ``open(O_RDONLY)`` + ``close`` of *path*."""
    clock, op, cl, flags = time.perf_counter_ns, os.open, os.close, os.O_RDONLY
    out = [0] * n
    for i in range(n):
        t = clock()
        cl(op(path, flags))
        out[i] = clock() - t
    return out
