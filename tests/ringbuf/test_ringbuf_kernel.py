"""RingReader over real kernel ring buffers, filled by a socket filter through BPF_PROG_TEST_RUN."""

from __future__ import annotations

import os
import threading

import pytest

from pybpfguard.bpf import _sys
from pybpfguard.bpf.maps import Map, MapSpec, MapType
from pybpfguard.bpf.ringbuf import RingBufferError, RingReader, record_span

from .producers import expected_payload, load_producer, record_seq

pytestmark = pytest.mark.kernel


class SeqChecker:
    """Callback asserting records arrive with consecutive seqs (from *start*) and intact payloads."""

    def __init__(self, record_size: int, start: int = 0, step_skip: int = 0, full: bool = True) -> None:
        self.record_size = record_size
        self.next = start
        self.skip = step_skip  # discard_every of the producer: those seqs never arrive
        self.full = full
        self.count = 0

    def __call__(self, rec: memoryview) -> None:
        if self.skip and self.next % self.skip == 0:
            self.next += 1
        seq = record_seq(rec)
        assert seq == self.next, f"record {self.count}: seq {seq}, expected {self.next}"
        assert len(rec) == self.record_size
        if self.full:
            assert rec == expected_payload(seq, self.record_size), f"seq {seq}: payload corrupted"
        self.next += 1
        self.count += 1


@pytest.mark.ring_size(16 << 20)
@pytest.mark.slow
def test_a_million_records_all_arrive_in_order(ring_fd):
    check = SeqChecker(64, full=False)
    with load_producer(ring_fd, 64) as producer, RingReader(ring_fd) as reader:
        for _ in range(5):
            producer.run(200_000)  # 200k * 72 bytes fit in 16 MiB: no drops
            reader.consume(check)
        assert producer.dropped == 0
    assert check.count == 1_000_000 and check.next == 1_000_000


@pytest.mark.ring_size(4096)
def test_wraparound_of_a_small_ring_over_many_fill_and_drain_rounds_keeps_odd_length_records_intact(ring_fd):
    check = SeqChecker(13)
    with load_producer(ring_fd, 13) as producer, RingReader(ring_fd) as reader:
        for _ in range(300):
            producer.run(100)
            before = reader.consumer_pos
            delivered = reader.consume(check)
            assert reader.consumer_pos - before == delivered * 24  # 8-byte header + 13 rounded up to 16
        assert producer.dropped == 0
        wrapped = [seq for seq in range(check.next) if (seq * 24) % 4096 + 24 > 4096]
    assert check.count == 30_000 and len(wrapped) > 100  # records straddling the end arrived intact


@pytest.mark.ring_size(4096)
def test_discarded_records_are_skipped_and_their_space_is_released(ring_fd):
    check = SeqChecker(40, step_skip=4)
    with load_producer(ring_fd, 40, discard_every=4) as producer, RingReader(ring_fd) as reader:
        for _ in range(50):
            producer.run(400)  # overfills the 4 KiB ring: failed reserves are counted, never seen
            reader.consume(check)
            assert reader.consumer_pos == reader.producer_pos  # discards released with the batch
        assert producer.dropped > 0  # the ring did fill up, so released space was reused
        assert check.count == producer.next_seq - (producer.next_seq + 3) // 4  # seqs 0, 4, 8, ... discarded


@pytest.mark.ring_size(1 << 20)
def test_consume_returns_after_bounded_work_while_the_producer_is_faster(ring_fd):
    with load_producer(ring_fd, 32) as producer, RingReader(ring_fd) as reader:
        producer.run(1000)

        def read_slowly_while_producing(rec: memoryview) -> None:
            producer.run(3)  # three new records for each one read

        assert reader.consume(read_slowly_while_producing) == 1000  # bounded by the snapshot
        assert reader.available_bytes == 3000 * record_span(32)
        assert reader.consume(lambda rec: None, limit=10) == 10  # the cap bounds it further


@pytest.mark.ring_size(256 << 10)
@pytest.mark.slow
def test_producers_on_both_cpus_never_yield_a_corrupted_record(ring_fd):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    seen: set[int] = set()

    def verify(rec: memoryview) -> None:
        seq = record_seq(rec)
        assert rec == expected_payload(seq, 64), f"seq {seq}: corrupted"
        assert seq not in seen
        seen.add(seq)

    with load_producer(ring_fd, 64) as producer, RingReader(ring_fd) as reader:
        errors: list[BaseException] = []

        def produce_on(cpu: int) -> None:
            try:
                os.sched_setaffinity(0, {cpu})  # this thread only
                for _ in range(100):
                    producer.run(2000)
            except BaseException as err:  # re-raised in the test thread below
                errors.append(err)

        threads = [threading.Thread(target=produce_on, args=(cpu,)) for cpu in cpus[:2]]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            reader.poll(verify, timeout_s=0.01)
        for t in threads:
            t.join()
        reader.consume(verify)
        assert not errors, errors
        assert len(seen) == producer.next_seq > 0  # every reserved record arrived (drops took no seq)
        assert producer.dropped + producer.next_seq == 2 * 100 * 2000


def test_reopened_pinned_ring_continues_from_the_stored_consumer_position(bpffs, ring_fd):
    pin = bpffs / "events"
    _sys.obj_pin(ring_fd, pin)
    try:
        with load_producer(ring_fd, 24) as producer:
            producer.run(100)
            with RingReader(ring_fd) as first:
                assert first.consume(SeqChecker(24), limit=40) == 40
            with RingReader.open_pinned(pin) as again:
                assert again.consumer_pos == 40 * record_span(24)
                rest = SeqChecker(24, start=40)
                assert again.consume(rest) == 60 and rest.next == 100
    finally:
        os.unlink(pin)


def test_records_are_read_only_zero_copy_views_of_the_ring(reader, ring_fd):
    with load_producer(ring_fd, 16) as producer:
        producer.run(2)
        for rec in reader.records():
            assert isinstance(rec, memoryview) and rec.readonly
            with pytest.raises(TypeError):
                rec[0] = 1
    # `rec` still holds the last view: close() must not fail because of it
    reader.close()
    assert reader.closed


def test_reader_refuses_a_map_that_is_not_a_ring_buffer(kernel):
    with (
        _sys.map_create(2, 4, 8, 1, map_name="not_a_ring") as array,
        pytest.raises(RingBufferError, match="not BPF_MAP_TYPE_RINGBUF"),
    ):
        RingReader(array)


def test_closed_reader_refuses_to_consume(ring_fd):
    reader = RingReader(ring_fd)
    reader.close()
    reader.close()
    with pytest.raises(RingBufferError, match="closed"):
        reader.consume(lambda rec: None)


def test_reader_borrows_a_map_object_and_leaves_it_open(kernel):
    with Map.create(MapSpec(MapType.BPF_MAP_TYPE_RINGBUF, 1 << 14, name="events")) as events:
        with RingReader(events) as reader, load_producer(events.fd, 16) as producer:
            producer.run(3)
            assert reader.size_bytes == 1 << 14 and reader.consume(SeqChecker(16)) == 3
        assert not events.fd.closed  # borrowed, not taken
