"""Ring buffer producers for tests and benchmarks: a socket filter that writes one record per run.

Driven by ``BPF_PROG_TEST_RUN`` with ``repeat`` (KERNEL.md: about 1 M records in 0.09 s), so tests and
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

# include/uapi/linux/bpf.h
BPF_PROG_TYPE_SOCKET_FILTER = 1  # enum bpf_prog_type
BPF_MAP_TYPE_ARRAY = 2  # enum bpf_map_type
BPF_MAP_TYPE_RINGBUF = 27
BPF_F_MMAPABLE = 1 << 10  # map_flags
BPF_PSEUDO_MAP_FD = 1  # ld_imm64 src_reg
BPF_FUNC_map_lookup_elem = 1  # enum bpf_func_id (___BPF_FUNC_MAPPER)
BPF_FUNC_ringbuf_reserve = 131
BPF_FUNC_ringbuf_submit = 132
BPF_FUNC_ringbuf_discard = 133
BPF_ADD = 0x00
BPF_FETCH = 0x01

# Opcodes (include/uapi/linux/bpf.h, Documentation/bpf/standardization/instruction-set.rst):
# class | size/source | mode/op
_LD_IMM64 = 0x18  # BPF_LD | BPF_DW | BPF_IMM
_MOV64_IMM, _MOV64_REG = 0xB7, 0xBF  # BPF_ALU64 | BPF_MOV | BPF_K/BPF_X
_ADD64_IMM, _AND64_IMM, _XOR64_IMM, _RSH64_IMM = 0x07, 0x57, 0xA7, 0x77
_JNE_IMM = 0x55  # BPF_JMP | BPF_JNE | BPF_K
_CALL, _EXIT = 0x85, 0x95
_ST_W = 0x62  # BPF_ST | BPF_MEM | BPF_W
_STX = {8: 0x7B, 4: 0x63, 2: 0x6B, 1: 0x73}  # BPF_STX | BPF_MEM | BPF_DW/W/H/B
_ATOMIC_DW = 0xDB  # BPF_STX | BPF_ATOMIC | BPF_DW
R0, R1, R2, R3, R6, R7, R8, R10 = 0, 1, 2, 3, 6, 7, 8, 10

COUNTERS = struct.Struct("=QQ")  # the counters array value: next_seq, dropped (native u64, like the map)


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One ``struct bpf_insn`` (8 bytes: code, dst_reg:4 | src_reg:4, s16 off, s32 imm)."""
    return struct.pack("<BBhi", code, src << 4 | dst, off, imm)


def _ld_map_fd(dst: int, map_fd: _sys.Fd) -> bytes:
    return _insn(_LD_IMM64, dst, BPF_PSEUDO_MAP_FD, 0, map_fd.raw) + _insn(0)


def _skip_if_ne(reg: int, imm: int, body: bytes) -> bytes:
    """``if reg != imm`` jump over *body*; *body* runs otherwise. The one place a jump offset is counted."""
    return _insn(_JNE_IMM, reg, 0, len(body) // 8, imm) + body


def _return(value: int) -> bytes:
    return _insn(_MOV64_IMM, R0, imm=value) + _insn(_EXIT)


def _call(helper: int) -> bytes:
    return _insn(_CALL, imm=helper)


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


def _fill(record_size: int) -> bytes:
    """Stores of ``seq ^ chunk_salt(k)`` into the record at r7, seq in r6. A tail chunk shorter than 8
    bytes is written little-endian piece by piece (W, H, B), shifting the value down between pieces."""
    code = _insn(_STX[8], R7, R6, 0)
    for k in range(8, record_size, 8):
        code += _insn(_MOV64_REG, R1, R6) + _insn(_XOR64_IMM, R1, imm=chunk_salt(k))
        left = record_size - k
        if left >= 8:
            code += _insn(_STX[8], R7, R1, k)
            continue
        at = shifted = k
        for width in (4, 2, 1):
            if left >= width:
                if at > shifted:
                    code += _insn(_RSH64_IMM, R1, imm=8 * (at - shifted))
                    shifted = at
                code += _insn(_STX[width], R7, R1, at)
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
    lookup = (
        _insn(_ST_W, R10, 0, -4, 0)  # key = 0
        + _insn(_MOV64_REG, R2, R10)
        + _insn(_ADD64_IMM, R2, imm=-4)
        + _ld_map_fd(R1, counters)
        + _call(BPF_FUNC_map_lookup_elem)
        + _skip_if_ne(R0, 0, _return(0))
        + _insn(_MOV64_REG, R8, R0)
    )
    reserve = (
        _ld_map_fd(R1, ring)
        + _insn(_MOV64_IMM, R2, imm=record_size)
        + _insn(_MOV64_IMM, R3, imm=0)
        + _call(BPF_FUNC_ringbuf_reserve)
        + _skip_if_ne(R0, 0, _insn(_MOV64_IMM, R1, imm=1) + _insn(_ATOMIC_DW, R8, R1, 8, BPF_ADD) + _return(0))
        + _insn(_MOV64_REG, R7, R0)
    )
    seq = _insn(_MOV64_IMM, R6, imm=1) + _insn(_ATOMIC_DW, R8, R6, 0, BPF_ADD | BPF_FETCH)
    release = _insn(_MOV64_REG, R1, R7) + _insn(_MOV64_IMM, R2, imm=0)
    discard = b""
    if discard_every:
        discard = (
            _insn(_MOV64_REG, R1, R6)
            + _insn(_AND64_IMM, R1, imm=discard_every - 1)
            + _skip_if_ne(R1, 0, release + _call(BPF_FUNC_ringbuf_discard) + _return(2))
        )
    submit = release + _call(BPF_FUNC_ringbuf_submit) + _return(1)
    return lookup + reserve + seq + _fill(record_size) + discard + submit


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
        mem = mmap.mmap(counters.raw, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        code = producer_insns(ring, counters, record_size, discard_every)
        prog = _sys.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, code, prog_name="test_ringprod")
    except BaseException:
        counters.close()
        raise
    return Producer(prog, counters, record_size, mem)
