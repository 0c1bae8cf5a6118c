"""The BPF ring buffer consumer algorithm, over any three buffers (kernel mmaps or a fake in a bytearray).

Layout (kernel/bpf/ringbuf.c, Documentation/bpf/ringbuf.rst):

- consumer page: ``unsigned long consumer_pos`` at offset 0. Only the consumer writes it.
- producer page: ``unsigned long producer_pos`` at offset 0. Only the kernel writes it; it moves at
  *reserve* time, so every byte below it belongs to a reserved record.
- data area: ``size_bytes`` (a power of two), mapped twice back to back, so a record that wraps past the
  end is still contiguous at ``pos & mask``. Each record starts with ``struct bpf_ringbuf_hdr``
  (8 bytes: ``u32 len``, ``u32 pg_off``): ``len`` holds the payload length in its low 30 bits
  (``RINGBUF_MAX_RECORD_SZ = UINT_MAX / 4``), ``BPF_RINGBUF_BUSY_BIT`` (bit 31) while reserved and not yet
  submitted, ``BPF_RINGBUF_DISCARD_BIT`` (bit 30) when discarded. A record occupies
  ``round_up(len + BPF_RINGBUF_HDR_SZ, 8)`` bytes.

Algorithm (the one libbpf's ``ringbuf_process_ring`` implements, written for Python):

1. read ``consumer_pos``, snapshot ``producer_pos`` once: the call never looks past that snapshot, so it
   does bounded work however fast the producer is (and ``limit`` caps it further);
2. read each header with one aligned 32-bit load (``memoryview.cast("I")`` indexing is a single ``memcpy``
   of 4 aligned bytes, one ``mov`` on x86-64; ``struct`` with ``"<I"`` assembles bytes one by one and
   could tear);
3. BUSY: stop and return; the next call (or poll) retries. No spinning in Python;
4. DISCARD: skip, but advance past it, so its space is released with the batch;
5. otherwise hand out the payload as a zero-copy ``memoryview`` (read-only for kernel rings);
6. store ``consumer_pos`` once, after the batch (one 8-byte aligned store), which releases the space to
   the producer. Records are valid until then, no longer: the producer may overwrite them right after.

Memory ordering: the kernel publishes with ``smp_store_release`` (producer_pos, header) and reads
consumer_pos with ``smp_load_acquire``. On x86-64 (TSO) plain aligned loads and stores have acquire and
release semantics, which is what this module relies on; Python cannot issue barriers, so weakly ordered
CPUs (arm64) are not guaranteed by this reader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pybpfguard.bpf.errors import InvalidArgumentError
from pybpfguard.bpf.ringbuf.errors import RingBufferError, RingCorruptError

# include/uapi/linux/bpf.h: enum { BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ }
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
# kernel/bpf/ringbuf.c: RINGBUF_MAX_RECORD_SZ (UINT_MAX / 4): the length is the low 30 bits of the header
RINGBUF_LEN_MASK = BPF_RINGBUF_DISCARD_BIT - 1

_FLAG_BITS = BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT
# round_up(len + BPF_RINGBUF_HDR_SZ, 8) == (len + _ROUND) & _ALIGN
_ROUND = BPF_RINGBUF_HDR_SZ + 7
_ALIGN = ~7

RecordCallback = Callable[[memoryview], Any]


def record_span(length: int) -> int:
    """Bytes a record with a *length*-byte payload occupies in the ring: header plus payload, 8-aligned."""
    return (length + _ROUND) & _ALIGN


class Ring:
    """The consumer side of one BPF ring buffer, over three buffers.

    *consumer_page*: writable buffer whose first 8 bytes are ``consumer_pos`` (native u64).
    *producer_page*: buffer whose first 8 bytes are ``producer_pos`` (native u64).
    *data*: the data area mapped twice: at least ``2 * size_bytes`` bytes, 8-byte aligned.
    *size_bytes*: data area size, a power of two and a multiple of 8.

    The buffers are borrowed: the caller keeps them alive and unchanged in size. ``RingReader`` builds
    them from the kernel's mmaps; tests may pass bytearrays to drive states the kernel cannot be made to
    show on demand (a BUSY record, a corrupt length). Not thread-safe: one consumer per ring.
    """

    def __init__(self, consumer_page: Any, producer_page: Any, data: Any, size_bytes: int) -> None:
        if size_bytes <= 0 or size_bytes & (size_bytes - 1) or size_bytes % 8:
            raise InvalidArgumentError(f"ring size_bytes {size_bytes} is not a power of two >= 8")
        self._cons = memoryview(consumer_page)[:8].cast("Q")
        if self._cons.readonly:
            raise InvalidArgumentError("consumer page must be writable (the consumer stores consumer_pos there)")
        self._prod = memoryview(producer_page)[:8].cast("Q")
        view = memoryview(data)
        if view.nbytes < 2 * size_bytes:
            raise InvalidArgumentError(
                f"data area is {view.nbytes} bytes; a {size_bytes}-byte ring maps {2 * size_bytes}")
        self._data = view[: 2 * size_bytes]
        self._hdr = self._data.cast("I")  # u32 per 4 bytes: header = _hdr[off >> 2], off 8-aligned
        self.size_bytes = size_bytes
        self._mask = size_bytes - 1
        self._open = True

    @property
    def consumer_pos(self) -> int:
        """Bytes consumed since the ring was created (monotonic; ``& (size_bytes - 1)`` is the offset)."""
        return int(self._cons[0])

    @property
    def producer_pos(self) -> int:
        """Bytes reserved by producers since the ring was created (includes BUSY records)."""
        return int(self._prod[0])

    @property
    def available_bytes(self) -> int:
        """``producer_pos - consumer_pos``: bytes of records not yet consumed (reserved ones included)."""
        return int(self._prod[0]) - int(self._cons[0])

    def consume(self, callback: RecordCallback, limit: int | None = None) -> int:
        """Hand each committed record's payload to *callback*; return how many records it got.

        Bounded: looks only below the producer position read at the start of the call, and stops after
        *limit* records (``None``: no cap; discarded records do not count). Stops at a BUSY record and
        returns; a later call retries it. Discarded records are skipped and their space released.
        ``consumer_pos`` is stored once, at the end of the call, so the memoryviews are valid only until
        ``consume`` returns. If *callback* raises, the records up to and including the one it raised on
        are committed and the exception propagates (libbpf's rule for a failing sample callback).

        Raises :class:`RingCorruptError` if a header claims a record running past the producer position.
        """
        count = 0
        batch = self.records(limit)
        try:
            for record in batch:
                count += 1
                callback(record)
        finally:
            batch.close()  # commit now, even when callback raised, not when the frame is collected
        return count

    def records(self, limit: int | None = None) -> Iterator[memoryview]:
        """Iterate over the committed records' payloads, like :meth:`consume`, as one batch.

        The generator snapshots the producer position when iteration starts and commits
        ``consumer_pos`` once, when it is exhausted or closed (a ``break`` out of the ``for`` loop closes
        it). A record handed out counts as consumed; each memoryview is valid until that commit.
        Raises :class:`RingCorruptError` like :meth:`consume`.
        """
        if not self._open:
            raise RingBufferError("ring buffer reader is closed")
        hdrs = self._hdr
        data = self._data
        mask = self._mask
        start = cons = int(self._cons[0])
        prod = int(self._prod[0])
        remaining = -1 if limit is None else limit
        if remaining == 0:
            return
        count = 0
        try:
            while cons < prod:
                off = cons & mask
                header = hdrs[off >> 2]
                length = header & RINGBUF_LEN_MASK
                end = cons + ((length + _ROUND) & _ALIGN)
                if header & _FLAG_BITS:
                    if header & BPF_RINGBUF_BUSY_BIT:
                        break
                    if end > prod:
                        raise RingCorruptError(cons, prod, header, length, self.size_bytes)
                    cons = end
                    continue
                if end > prod:
                    raise RingCorruptError(cons, prod, header, length, self.size_bytes)
                cons = end
                off += BPF_RINGBUF_HDR_SZ
                yield data[off : off + length]
                count += 1
                if count == remaining:
                    break
        finally:
            if cons != start:
                self._cons[0] = cons

    @property
    def closed(self) -> bool:
        return not self._open

    def _release_views(self) -> None:
        """Drop this ring's own views of the buffers (record views handed out keep theirs). Idempotent."""
        self._open = False
        for view in (self._hdr, self._data, self._cons, self._prod):
            view.release()
