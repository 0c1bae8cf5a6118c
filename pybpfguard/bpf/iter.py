"""BPF iterators (``iter/<target>`` tracing programs): attach, then read() to run them over kernel objects.

Source: Documentation/bpf/bpf_iterators.rst. A program loaded with ``expected_attach_type``
``BPF_TRACE_ITER`` and ``attach_to`` the target (``"task"`` -> ``bpf_iter_task``) is linked with
BPF_LINK_CREATE; each BPF_ITER_CREATE on the link gives an fd whose reads walk the objects once.
"""

from __future__ import annotations

import os

from pybpfguard.bpf._sys.iter import iter_create
from pybpfguard.bpf._sys.link import link_create
from pybpfguard.bpf.program import Program
from pybpfguard.bpf.types import AttachType


def run_iterator(prog: Program, read_size_bytes: int = 1 << 16) -> bytes:
    """Run the iterator *prog* (borrowed) once over all its objects; return what it printed (seq_file
    output, often empty when the program only updates maps). Raises SyscallError subclasses."""
    with link_create(prog.fd, AttachType.BPF_TRACE_ITER, what=f"iter link {prog.name}") as link, \
            iter_create(link) as it:
        chunks: list[bytes] = []
        while chunk := os.read(it.raw, read_size_bytes):
            chunks.append(chunk)
        return b"".join(chunks)


__all__ = ["run_iterator"]
