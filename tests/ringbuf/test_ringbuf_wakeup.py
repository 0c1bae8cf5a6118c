"""Waiting for ring buffer data: epoll (level-triggered) through RingReader, RingPoller, selectors, asyncio."""

from __future__ import annotations

import asyncio
import selectors
import threading
import time

import pytest

from pybpfguard.bpf.ringbuf import RingBufferError, RingPoller, RingReader

from .producers import create_ring, load_producer, record_seq

pytestmark = pytest.mark.kernel


def test_wait_times_out_on_an_empty_ring_and_is_ready_while_data_is_unconsumed(reader, ring_fd):
    start = time.monotonic()
    assert reader.wait(0.05) is False
    assert time.monotonic() - start >= 0.04
    assert reader.poll(lambda rec: None, timeout_s=0) == 0
    with load_producer(ring_fd, 16) as producer:
        producer.run(3)
        assert reader.wait(0) and reader.wait(0)  # level-triggered: still ready until consumed
        assert reader.poll(lambda rec: None, timeout_s=0) == 3
        assert reader.wait(0) is False


def test_poll_blocked_in_another_thread_wakes_when_a_record_arrives(reader, ring_fd):
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(reader.poll(lambda rec: None, timeout_s=10)))
    with load_producer(ring_fd, 16) as producer:
        waiter.start()
        time.sleep(0.05)
        assert waiter.is_alive()  # really blocked in epoll_wait
        producer.run(1)
        waiter.join(5)
    assert not waiter.is_alive() and got == [1]


def test_fileno_plugs_into_selectors(reader, ring_fd):
    with selectors.DefaultSelector() as sel, load_producer(ring_fd, 16) as producer:
        sel.register(reader, selectors.EVENT_READ)
        assert sel.select(timeout=0) == []
        producer.run(2)
        ready = sel.select(timeout=1)
        assert [key.fileobj for key, _ in ready] == [reader]
        assert reader.consume(lambda rec: None) == 2
        sel.unregister(reader)


def test_fileno_plugs_into_asyncio_add_reader(reader, ring_fd):
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        seqs: list[int] = []
        done = loop.create_future()

        def on_readable() -> None:
            reader.consume(lambda rec: seqs.append(record_seq(rec)))
            if len(seqs) >= 5 and not done.done():
                done.set_result(None)

        loop.add_reader(reader.fileno(), on_readable)
        try:
            loop.call_later(0.02, producer.run, 5)
            await asyncio.wait_for(done, 5)
        finally:
            loop.remove_reader(reader.fileno())
        return seqs

    with load_producer(ring_fd, 16) as producer:
        assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_one_poller_serves_several_rings_and_drains_only_the_ready_one(kernel):
    with (
        create_ring(1 << 14, "ring_a") as fd_a,
        create_ring(1 << 14, "ring_b") as fd_b,
        RingReader(fd_a) as a,
        RingReader(fd_b) as b,
        RingPoller() as poller,
    ):
        from_a: list[int] = []
        from_b: list[int] = []
        poller.add(a, lambda rec: from_a.append(record_seq(rec)))
        poller.add(b, lambda rec: from_b.append(record_seq(rec)))
        with pytest.raises(RingBufferError, match="already"):
            poller.add(a, lambda rec: None)
        assert poller.poll(timeout_s=0.02) == 0
        with load_producer(fd_b, 16) as prod_b, load_producer(fd_a, 16) as prod_a:
            prod_b.run(4)
            assert poller.poll(timeout_s=1) == 4 and from_b == [0, 1, 2, 3] and from_a == []
            prod_a.run(2)
            prod_b.run(1)
            assert poller.poll(timeout_s=1) == 3 and from_a == [0, 1] and from_b[-1] == 4
            poller.remove(b)
            prod_b.run(1)
            assert poller.poll(timeout_s=0.02) == 0  # b no longer polled
            assert b.consume(lambda rec: None) == 1
