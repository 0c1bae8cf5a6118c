"""A socket filter that writes valid ``block`` records into a ring, one per ``BPF_PROG_TEST_RUN`` repeat.

The record follows :data:`pybpfguard.agent.events.records.BLOCK` (docs/records.md#block): the fixed
72-byte part, then a path tail of :data:`PATH_LEN` bytes. Each field is a function of the record's
sequence number ``seq`` (an atomic fetch-add on a counter, taken after the reserve succeeded), so a
benchmark can check what it decoded:

- ``pid = PID_BASE + (seq & (PROCESSES - 1))``, ``ppid = PPID``, ``start_time = START_BASE + (seq & (PROCESSES
  - 1)) * 1000`` (ns since boot), ``parent_start_time = PARENT_START``: :data:`PROCESSES` distinct
  processes, as a busy host that keeps hitting a rule would show;
- ``cgid``: the caller's (a real cgroup, so the decoder's cache resolves it);
- ``comm = "cat"``, ``ino = INO_BASE + (seq & 127)``, ``dev = DEV``, ``action = seq & 1`` (AUDIT, TERM);
- ``path``: :data:`PATH` (:data:`PATH_LEN` bytes, no NUL), ``flags = 0``.

The counters (u64 ``next_seq``, u64 ``dropped``) are the ones of ``tests/ringbuf/producers.py`` and
are read through the same :class:`~tests.ringbuf.producers.Producer`.
"""

from __future__ import annotations

import mmap

from pybpfguard.agent.events.records import BLOCK, ActionCode, RecordType
from pybpfguard.bpf import _sys
from pybpfguard.bpf._sys.maps import map_mmap
from pybpfguard.bpf.asm import BPF_DW, R0, R1, R2, R6, R7, Insn, finalize
from tests.ringbuf.producers import (
    BPF_F_MMAPABLE,
    BPF_MAP_TYPE_ARRAY,
    BPF_PROG_TYPE_SOCKET_FILTER,
    COUNTERS,
    Producer,
    reserve_with_seq,
)

PROCESSES = 64  # distinct (pid, start_time) pairs; a power of two (masked)
PID_BASE, PPID = 10_000, 9_999
START_BASE, PARENT_START = 123_456_789_000, 1_000_000
INO_BASE, DEV = 4_000_000, 271_581_186  # dev: major 259 << 20 | minor 2, the kernel encoding
COMM = b"cat"
PATH = b"/var/lib/app/data/secret-00.db/x"  # 32 bytes: the record is 104 bytes, 112 in the ring
PATH_LEN = len(PATH)
RECORD_SIZE = BLOCK.size + PATH_LEN

if PATH_LEN % 8 or ActionCode.AUDIT != 0 or ActionCode.TERM != 1:
    raise ImportError("block_producer writes the path in 8-byte stores and action as seq & 1")


def _word(offset: int, data: bytes) -> int:
    """The little-endian u64 at *offset* of *data* (zero-padded)."""
    return int.from_bytes(data[offset:offset + 8].ljust(8, b"\0"), "little")


def block_producer_insns(ring: _sys.Fd, counters: _sys.Fd, cgid: int) -> bytes:
    """Reserve :data:`RECORD_SIZE` bytes in *ring*, write one block record, submit (r0 = 1);
    r0 = 0 when the ring is full (``dropped`` += 1)."""
    o = BLOCK.offset
    if (o("type"), o("pid"), o("ppid"), o("flags"), o("path_len")) != (0, 4, 8, 12, 14) \
            or (o("dev"), o("action"), o("pad0")) != (64, 68, 69) or BLOCK.size != 72:
        raise ImportError("BLOCK layout changed: update the paired stores of block_producer")
    code = [
        *reserve_with_seq(ring, counters, RECORD_SIZE),  # r6 = seq, r7 = record
        # type | pid << 32, pid = PID_BASE + (seq & mask)
        Insn.mov64_reg(R1, R6),
        Insn.alu64_imm("and", R1, PROCESSES - 1),
        Insn.alu64_imm("add", R1, PID_BASE),
        Insn.alu64_imm("lsh", R1, 32),
        Insn.alu64_imm("or", R1, int(RecordType.BLOCK)),
        Insn.stx_mem(BPF_DW, R7, R1, 0),
        # ppid | flags << 32 | path_len << 48
        Insn.ld_imm64(R1, PPID | PATH_LEN << 48),
        Insn.stx_mem(BPF_DW, R7, R1, 8),
        # start_time = START_BASE + (seq & mask) * 1000
        Insn.mov64_reg(R1, R6),
        Insn.alu64_imm("and", R1, PROCESSES - 1),
        Insn.alu64_imm("mul", R1, 1000),
        Insn.ld_imm64(R2, START_BASE),
        Insn.alu64_reg("add", R1, R2),
        Insn.stx_mem(BPF_DW, R7, R1, o("start_time")),
        Insn.ld_imm64(R1, PARENT_START),
        Insn.stx_mem(BPF_DW, R7, R1, o("parent_start_time")),
        Insn.ld_imm64(R1, cgid),
        Insn.stx_mem(BPF_DW, R7, R1, o("cgid")),
        Insn.ld_imm64(R1, _word(0, COMM)),
        Insn.stx_mem(BPF_DW, R7, R1, o("comm")),
        Insn.st_mem(BPF_DW, R7, o("comm") + 8, 0),
        # ino = INO_BASE + (seq & 127)
        Insn.mov64_reg(R1, R6),
        Insn.alu64_imm("and", R1, 127),
        Insn.alu64_imm("add", R1, INO_BASE),
        Insn.stx_mem(BPF_DW, R7, R1, o("ino")),
        # dev | action << 32 (pad0 zero), action = seq & 1
        Insn.mov64_reg(R1, R6),
        Insn.alu64_imm("and", R1, 1),
        Insn.alu64_imm("lsh", R1, 32),
        Insn.alu64_imm("or", R1, DEV),
        Insn.stx_mem(BPF_DW, R7, R1, o("dev")),
    ]
    for k in range(0, PATH_LEN, 8):
        code += [Insn.ld_imm64(R1, _word(k, PATH)), Insn.stx_mem(BPF_DW, R7, R1, BLOCK.size + k)]
    code += [Insn.mov64_reg(R1, R7), Insn.mov64_imm(R2, 0), Insn.call("ringbuf_submit"),
             Insn.mov64_imm(R0, 1), Insn.exit()]
    return finalize(code)


def expected_record(seq: int, cgid: int) -> bytes:
    """The exact record the program writes for *seq* (built with the layout table, not the program)."""
    p = seq & (PROCESSES - 1)
    return BLOCK.pack(pid=PID_BASE + p, ppid=PPID, start_time=START_BASE + p * 1000,
                      parent_start_time=PARENT_START, cgid=cgid, comm=COMM, ino=INO_BASE + (seq & 127), dev=DEV,
                      action=seq & 1, path=PATH)


def load_block_producer(ring: _sys.Fd, cgid: int) -> Producer:
    """Load the block-record socket filter writing into *ring* (borrowed); records carry *cgid*.
    Returns a :class:`Producer` (owns the program and the counters): ``run(repeat)`` fills the ring."""
    counters = _sys.map_create(BPF_MAP_TYPE_ARRAY, 4, COUNTERS.size, 1, BPF_F_MMAPABLE, map_name="bench_ctrs")
    try:
        mem = map_mmap(counters, mmap.PAGESIZE, writable=True)
        prog = _sys.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, block_producer_insns(ring, counters, cgid),
                              prog_name="bench_blockprod")
    except BaseException:
        counters.close()
        raise
    return Producer(prog, counters, RECORD_SIZE, mem)
