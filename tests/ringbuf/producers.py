"""Ring buffer producers for tests and benchmarks: a socket filter that writes one record per run.

Driven by ``BPF_PROG_TEST_RUN`` with ``repeat`` (docs/kernel.md: about 1 M records in 0.09 s), so tests and
benchmarks fill a ring without a live workload. Each record is a function of its sequence number, so a
reader can check every byte:

- payload bytes 0..7: ``seq`` (u64, little-endian), taken with an atomic fetch-add after the reserve
  succeeded, so records in the ring carry 0, 1, 2, ... with no gaps from failed reserves;
- every further 8-byte chunk at offset ``k``: ``seq ^ chunk_salt(k)``, truncated for the tail chunk, so
  *record_size* need not be a multiple of 8.

With *discard_every* = 2**n, records whose ``seq`` is a multiple of it are reserved, filled, then
discarded (``bpf_ringbuf_discard``) instead of submitted. A failed reserve (ring full) is counted in
``dropped``. Counters live in a ``BPF_F_MMAPABLE`` array (u64 ``next_seq``, u64 ``dropped``) that the
test reads through an mmap.

Example::

    with load_producer(ring_fd, record_size=64) as producer:
        producer.run(1000)            # 1000 records (minus drops if the ring fills)
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

from pybpfguard.bpf import _sys
from pybpfguard.bpf._sys.maps import map_mmap
from pybpfguard.bpf.asm import BPF_B, BPF_DW, BPF_H, BPF_W, R0, R1, R2, R3, R6, R7, R8, R10, Insn, finalize

# include/uapi/linux/bpf.h
BPF_PROG_TYPE_SOCKET_FILTER = 1  # enum bpf_prog_type
BPF_MAP_TYPE_ARRAY = 2  # enum bpf_map_type
BPF_MAP_TYPE_RINGBUF = 27
BPF_F_MMAPABLE = 1 << 10  # map_flags

COUNTERS = struct.Struct("=QQ")  # the counters array value: next_seq, dropped (native u64, like the map)
_TAIL_STORES = ((4, BPF_W), (2, BPF_H), (1, BPF_B))


def chunk_salt(offset: int) -> int:
    """The positive 31-bit constant xored into ``seq`` for the 8-byte chunk at payload *offset*."""
    return (offset * 0x9E3779B1) & 0x7FFFFFFF


def expected_payload(seq: int, record_size: int) -> bytes:
    """The exact payload the producer writes for *seq*."""
    out = bytearray(seq.to_bytes(8, "little"))
    for k in range(8, record_size, 8):
        out += (seq ^ chunk_salt(k)).to_bytes(8, "little")
    return bytes(out[:record_size])


def record_seq(record: memoryview | bytes) -> int:
    """The sequence number of a record (its first 8 bytes, u64 little-endian)."""
    return int.from_bytes(record[:8], "little")


def _fill(record_size: int) -> list[Insn]:
    """Stores of ``seq ^ chunk_salt(k)`` into the record at r7, seq in r6. A tail chunk shorter than 8
    bytes is written little-endian piece by piece (W, H, B), shifting the value down between pieces."""
    code = [Insn.stx_mem(BPF_DW, R7, R6, 0)]
    for k in range(8, record_size, 8):
        code += [Insn.mov64_reg(R1, R6), Insn.alu64_imm("xor", R1, chunk_salt(k))]
        left = record_size - k
        if left >= 8:
            code.append(Insn.stx_mem(BPF_DW, R7, R1, k))
            continue
        at = shifted = k
        for width, size in _TAIL_STORES:
            if left >= width:
                if at > shifted:
                    code.append(Insn.alu64_imm("rsh", R1, 8 * (at - shifted)))
                    shifted = at
                code.append(Insn.stx_mem(size, R7, R1, at))
                at += width
                left -= width
    return code


def producer_insns(ring: _sys.Fd, counters: _sys.Fd, record_size: int, discard_every: int = 0) -> bytes:
    """The socket filter: reserve *record_size* bytes in *ring*, fill, submit (r0 = 1) or discard (r0 = 2);
    r0 = 0 when the ring is full (``dropped`` += 1)."""
    if not 8 <= record_size <= 4096:
        raise ValueError(f"record_size {record_size} outside 8..4096")
    if discard_every and discard_every & (discard_every - 1):
        raise ValueError(f"discard_every {discard_every} is not a power of two")
    code = [
        *reserve_with_seq(ring, counters, record_size),
        *_fill(record_size),
        Insn.mov64_reg(R1, R7),
        Insn.mov64_imm(R2, 0),
    ]
    if discard_every:
        code += [
            Insn.mov64_reg(R3, R6),
            Insn.alu64_imm("and", R3, discard_every - 1),
            Insn.jmp_imm("jeq", R3, 0, to="discard"),
        ]
    code += [Insn.call("ringbuf_submit"), Insn.mov64_imm(R0, 1), Insn.exit()]
    if discard_every:
        code += [Insn.call("ringbuf_discard").labelled("discard"), Insn.mov64_imm(R0, 2), Insn.exit()]
    return finalize(code)


@dataclass
class Producer:
    """A loaded producer: owns its program, its counters map and that map's mmap; borrows the ring."""

    prog: _sys.Fd
    counters: _sys.Fd
    record_size: int
    _counters_mem: mmap.mmap

    def run(self, repeat: int) -> int:
        """Run the program *repeat* times on this CPU (BPF_PROG_TEST_RUN); return the last r0."""
        return _sys.prog_test_run(self.prog, bytes(64), repeat=repeat).retval

    @property
    def next_seq(self) -> int:
        """Records reserved so far (submitted or discarded): the next record's seq."""
        return COUNTERS.unpack_from(self._counters_mem)[0]

    @property
    def dropped(self) -> int:
        """Reserves that failed because the ring was full."""
        return COUNTERS.unpack_from(self._counters_mem)[1]

    def close(self) -> None:
        self._counters_mem.close()
        self.prog.close()
        self.counters.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_ring(size_bytes: int, name: str = "test_ring") -> _sys.Fd:
    """A new ``BPF_MAP_TYPE_RINGBUF`` of *size_bytes* (a power-of-two multiple of the page size)."""
    return _sys.map_create(BPF_MAP_TYPE_RINGBUF, 0, 0, size_bytes, map_name=name)


def load_producer(ring: _sys.Fd, record_size: int = 64, discard_every: int = 0) -> Producer:
    """Load the producer socket filter writing *record_size*-byte records into *ring* (borrowed)."""
    counters = _sys.map_create(BPF_MAP_TYPE_ARRAY, 4, COUNTERS.size, 1, BPF_F_MMAPABLE, map_name="test_ctrs")
    try:
        mem = map_mmap(counters, mmap.PAGESIZE, writable=True)
        code = producer_insns(ring, counters, record_size, discard_every)
        prog = _sys.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, code, prog_name="test_ringprod")
    except BaseException:
        counters.close()
        raise
    return Producer(prog, counters, record_size, mem)


def reserve_with_seq(ring: _sys.Fd, counters: _sys.Fd, record_size: int) -> list[Insn]:
    """The producers' shared prologue: reserve *record_size* bytes of *ring*; a full ring adds 1 to
    ``counters[0].dropped`` (offset 8) and returns 0 at label ``out``. Leaves r7 = the record,
    r6 = its sequence number (``counters[0].next_seq++``, offset 0), r8 = &counters[0]."""
    return [
        Insn.st_mem(BPF_W, R10, -4, 0),  # key = 0
        Insn.mov64_reg(R2, R10),
        Insn.alu64_imm("add", R2, -4),
        Insn.ld_map_fd(R1, counters.raw),
        Insn.call("map_lookup_elem"),
        Insn.jmp_imm("jeq", R0, 0, to="out"),
        Insn.mov64_reg(R8, R0),  # r8 = &counters
        Insn.ld_map_fd(R1, ring.raw),
        Insn.mov64_imm(R2, record_size),
        Insn.mov64_imm(R3, 0),
        Insn.call("ringbuf_reserve"),
        Insn.jmp_imm("jne", R0, 0, to="reserved"),
        Insn.mov64_imm(R1, 1),
        Insn.atomic("add", BPF_DW, R8, R1, 8),  # dropped += 1
        Insn.mov64_imm(R0, 0).labelled("out"),
        Insn.exit(),
        Insn.mov64_reg(R7, R0).labelled("reserved"),  # r7 = record
        Insn.mov64_imm(R6, 1),
        Insn.atomic("add", BPF_DW, R8, R6, 0, fetch=True),  # r6 = next_seq++
    ]
