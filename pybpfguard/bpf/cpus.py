"""The possible CPUs, which size every per-CPU map value.

The kernel copies one slot per *possible* CPU (``for_each_possible_cpu`` in kernel/bpf/hashtab.c and
arraymap.c, ``bpf_percpu_hash_copy``/``bpf_percpu_array_copy``), not per online CPU, so a buffer sized by
``os.cpu_count()`` is too small on hosts with hot-pluggable CPUs. The set is published as a cpulist
(Documentation/admin-guide/cputopology.rst) in ``/sys/devices/system/cpu/possible``: comma-separated
decimal ids and inclusive ranges, e.g. ``0``, ``0-3``, ``0,2-3``, ``0-319``, newline-terminated.
"""

from __future__ import annotations

import functools
import os

POSSIBLE_CPUS_PATH = "/sys/devices/system/cpu/possible"


class CpuListError(ValueError):
    """A cpulist that does not parse; names the text and the offending part."""


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """Parse a kernel cpulist (``"0,2-3\\n"``) into sorted, distinct CPU ids (``(0, 2, 3)``).

    Raises CpuListError for an empty list, a non-number, or a range whose end is below its start.
    """
    body = text.strip()
    if not body:
        raise CpuListError(f"empty cpulist {text!r}")
    ids: set[int] = set()
    for part in body.split(","):
        first, sep, last = part.partition("-")
        try:
            lo = int(first)
            hi = int(last) if sep else lo
        except ValueError as err:
            raise CpuListError(f"cpulist {text!r}: {part!r} is not a CPU id or range") from err
        if lo < 0 or hi < lo:
            raise CpuListError(f"cpulist {text!r}: range {part!r} is empty or negative")
        ids.update(range(lo, hi + 1))
    return tuple(sorted(ids))


@functools.lru_cache(maxsize=8)
def possible_cpu_ids(path: str | os.PathLike[str] = POSSIBLE_CPUS_PATH) -> tuple[int, ...]:
    """The possible CPU ids, read once per *path* (cached: the set is fixed at boot)."""
    with open(path, encoding="ascii") as f:
        return parse_cpu_list(f.read())


def possible_cpus(path: str | os.PathLike[str] = POSSIBLE_CPUS_PATH) -> int:
    """How many per-CPU slots the kernel copies: the number of possible CPUs (no fixed cap).

    For a list with holes (``0,2-3``) this is 3, as ``num_possible_cpus()`` counts; slot *i* of a per-CPU
    value then belongs to ``possible_cpu_ids()[i]``. Raises OSError if *path* cannot be read.
    """
    return len(possible_cpu_ids(path))
