"""The consumer algorithm over a fake ring in bytearrays: states the kernel will not show on demand.

A BPF program cannot leave a record reserved at exit (the verifier demands a submit or discard), and the
data area is mapped read-only, so a BUSY header and a corrupt length are staged here, on the same code
path RingReader runs over the kernel's mappings.
"""

from __future__ import annotations

import struct

import pytest

from pybpfguard.bpf.ringbuf import (
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    Ring,
    RingBufferError,
    RingCorruptError,
    record_span,
)

SIZE = 256


class FakeRing:
    """A producer writing the kernel's layout into bytearrays, data area mirrored like the double mmap."""

    def __init__(self, size: int = SIZE, start_pos: int = 0) -> None:
        self.size = size
        self.consumer = bytearray(8)
        self.producer = bytearray(8)
        self.data = bytearray(2 * size)
        struct.pack_into("=Q", self.consumer, 0, start_pos)
        struct.pack_into("=Q", self.producer, 0, start_pos)
        self.ring = Ring(self.consumer, self.producer, self.data, size)

    @property
    def prod(self) -> int:
        return struct.unpack_from("=Q", self.producer)[0]

    def _write(self, pos: int, blob: bytes) -> None:
        for i, byte in enumerate(blob):
            off = (pos + i) & (self.size - 1)
            self.data[off] = self.data[off + self.size] = byte

    def reserve(self, payload: bytes) -> int:
        """Reserve and fill a record, leave it BUSY; return its position."""
        pos = self.prod
        self._write(pos + 8, payload)
        self._write(pos, struct.pack("=II", len(payload) | BPF_RINGBUF_BUSY_BIT, 0))
        struct.pack_into("=Q", self.producer, 0, pos + record_span(len(payload)))
        return pos

    def commit(self, pos: int, length: int, discard: bool = False) -> None:
        self._write(pos, struct.pack("=I", length | (BPF_RINGBUF_DISCARD_BIT if discard else 0)))

    def submit(self, payload: bytes) -> int:
        pos = self.reserve(payload)
        self.commit(pos, len(payload))
        return pos


def drain(fake: FakeRing, limit: int | None = None) -> list[bytes]:
    out: list[bytes] = []
    fake.ring.consume(lambda rec: out.append(bytes(rec)), limit)
    return out


def test_busy_record_stops_the_reader_which_returns_and_resumes_once_submitted():
    fake = FakeRing()
    fake.submit(b"first")
    busy = fake.reserve(b"second")
    fake.submit(b"third")
    assert drain(fake) == [b"first"]
    assert fake.ring.consumer_pos == busy  # stopped at, not past, the BUSY record
    assert drain(fake) == []  # still busy: returns at once, nothing skipped
    fake.commit(busy, len(b"second"))
    assert drain(fake) == [b"second", b"third"]
    assert fake.ring.available_bytes == 0


def test_discarded_record_is_skipped_and_its_space_released():
    fake = FakeRing()
    fake.submit(b"kept-1")
    pos = fake.reserve(b"dropped")
    fake.commit(pos, len(b"dropped"), discard=True)
    fake.submit(b"kept-2")
    assert drain(fake) == [b"kept-1", b"kept-2"]
    assert fake.ring.consumer_pos == fake.prod


def test_trailing_discards_are_released_even_when_no_record_is_delivered():
    fake = FakeRing()
    pos = fake.reserve(b"x" * 20)
    fake.commit(pos, 20, discard=True)
    assert drain(fake) == []
    assert fake.ring.consumer_pos == fake.prod == record_span(20)


def test_odd_length_advances_by_header_plus_8_byte_aligned_payload():
    fake = FakeRing()
    fake.submit(b"A" * 13)
    assert drain(fake) == [b"A" * 13]
    assert fake.ring.consumer_pos == 24


def test_record_wrapping_the_end_of_the_data_area_arrives_contiguous():
    fake = FakeRing(start_pos=SIZE - 16)  # header in the last 16 bytes, payload wraps to the start
    payload = bytes(range(40))
    fake.submit(payload)
    assert drain(fake) == [payload]
    assert fake.ring.consumer_pos == SIZE - 16 + record_span(40)


def test_length_running_past_producer_position_raises_and_commits_nothing():
    fake = FakeRing()
    fake.submit(b"ok")
    pos = fake.submit(b"bad")
    fake.commit(pos, 200)  # corrupt: claims 200 bytes, only 16 were reserved
    seen: list[bytes] = []
    with pytest.raises(RingCorruptError) as info:
        fake.ring.consume(lambda rec: seen.append(bytes(rec)))
    err = info.value
    assert (err.consumer_pos, err.producer_pos, err.length) == (pos, fake.prod, 200)
    assert "runs past producer_pos" in str(err)
    assert seen == [b"ok"] and fake.ring.consumer_pos == pos  # the good record before it is committed


def test_consume_stops_at_the_producer_position_snapshot_while_the_producer_keeps_writing():
    fake = FakeRing(size=4096)
    for i in range(10):
        fake.submit(struct.pack("<Q", i))

    def faster_producer(rec: memoryview) -> None:
        fake.submit(b"more" * 2)  # a producer that outruns the reader: two new records per record read
        fake.submit(b"more" * 2)

    assert fake.ring.consume(faster_producer) == 10  # bounded by the snapshot taken at the start
    assert fake.ring.available_bytes == 20 * record_span(8)


def test_limit_caps_the_records_of_one_call_and_the_rest_stays_for_the_next():
    fake = FakeRing()
    for i in range(5):
        fake.submit(bytes([i]) * 3)
    assert drain(fake, limit=2) == [b"\0" * 3, b"\1" * 3]
    assert drain(fake, limit=0) == []
    assert drain(fake) == [b"\2" * 3, b"\3" * 3, b"\4" * 3]


def test_consumer_position_is_stored_once_per_batch_not_per_record():
    fake = FakeRing()
    for _ in range(3):
        fake.submit(b"12345678")
    positions = []
    fake.ring.consume(lambda rec: positions.append(fake.ring.consumer_pos))
    assert positions == [0, 0, 0] and fake.ring.consumer_pos == 3 * record_span(8)


def test_failing_callback_commits_through_its_record_and_propagates():
    fake = FakeRing()
    for i in range(4):
        fake.submit(bytes([i]))

    def fail_on_second(rec: memoryview) -> None:
        if rec[0] == 1:
            raise RuntimeError("sink down")

    with pytest.raises(RuntimeError, match="sink down"):
        fake.ring.consume(fail_on_second)
    assert fake.ring.consumer_pos == 2 * record_span(1)
    assert drain(fake) == [b"\2", b"\3"]


def test_records_iterator_commits_when_the_loop_breaks():
    fake = FakeRing()
    for i in range(4):
        fake.submit(bytes([i]))
    taken = []
    for rec in fake.ring.records():
        taken.append(bytes(rec))
        assert fake.ring.consumer_pos == 0  # not yet: one commit per batch
        if rec[0] == 1:
            break
    assert taken == [b"\0", b"\1"] and fake.ring.consumer_pos == 2 * record_span(1)


def test_ring_refuses_a_size_that_is_not_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        Ring(bytearray(8), bytearray(8), bytearray(600), 300)


def test_closed_ring_refuses_to_consume():
    fake = FakeRing()
    fake.ring._release_views()
    with pytest.raises(RingBufferError, match="closed"):
        drain(fake)
