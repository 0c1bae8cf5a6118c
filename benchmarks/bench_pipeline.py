"""Event pipeline, kernel ring -> JSON lines in a file: block events/s on one core, against ring floors.

The socket filter of :mod:`benchmarks.block_producer` writes valid ``block`` records (72-byte fixed
part, 32-byte path, 64 processes, two actions) into a kernel ring through ``BPF_PROG_TEST_RUN``
repeat, in ``setup``, outside the timed region. The timed path is the daemon's: ``RingReader.records``
in batches of :data:`BATCH`, ``RecordDecoder.decode_batch`` (Structs, ids, cgroup path), one
``LineEncoder.lines`` per batch and one ``os.write`` to a file. Floors from the same run, same ring:

- ``walk``: a bare header walk over the ring's own mappings (``bench_ringbuf.header_walk_floor``);
- ``drain``: ``for rec in reader.records()`` handing out each memoryview and doing nothing with it.

``test_sustained_*`` runs the producer concurrently (a forked child issuing ``BPF_PROG_TEST_RUN`` at a
paced rate) into a ring of the daemon's default size while this process drains, and reports the
producer's failed reserves (drops) at that rate.

Run: ``python3 -m pytest benchmarks/bench_pipeline.py --benchmark-columns=min,median,rounds``;
``python3 benchmarks/bench_pipeline.py --rss`` prints the RSS of a pipeline-only process (idle, then
after each million events) as JSON. Targets (issue 4): >= 500,000 block events/s with zero drops at
that rate (stretch 1,000,000); RSS <= 40 MB and flat.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.* and tests.* importable
from benchmarks.bench_ringbuf import header_walk_floor
from benchmarks.block_producer import RECORD_SIZE, expected_record, load_block_producer
from pybpfguard.agent.cgroups import CgroupCache, cgroup2_mount
from pybpfguard.agent.events.decode import RecordDecoder
from pybpfguard.agent.events.encode import LineEncoder
from pybpfguard.bpf import _sys
from pybpfguard.bpf.ringbuf import RingReader, record_span
from tests.ringbuf.producers import Producer, create_ring

RECORDS = 1 << 20  # a multiple of the producer's 128-record pattern, so every round writes the same bytes
RING_SIZE = 128 << 20  # 2**20 records * 112 bytes = 112 MiB fit: no drops while filling
BATCH = 1024  # records per RingReader.records() batch, as the daemon drains (daemon._RING_BATCH)
ROUNDS = 5
DAEMON_RING_SIZE = 16 << 20  # RunOptions.ringbuf_bytes default
SUSTAINED_RATES = (250_000, 500_000, 1_000_000)  # records/s the producer child aims at (target, half, stretch)
SUSTAINED_S = 3.0


def _kernel_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to load BPF programs")


def root_cgid() -> int:
    """The cgroup2 root's id (its directory inode), a cgid the decoder's cache resolves."""
    return os.stat(cgroup2_mount()).st_ino


class Pipeline:
    """The daemon's drain path into a file: ring batch -> events -> JSON lines -> one write per batch."""

    def __init__(self, reader: RingReader, fd: int) -> None:
        self.reader = reader
        self.fd = fd
        self.decoder = RecordDecoder(CgroupCache())
        self.encoder = LineEncoder()

    def drain(self) -> int:
        """Decode and write everything in the ring now; return the number of events written."""
        records, decode, lines, write, fd = self.reader.records, self.decoder.decode_batch, self.encoder.lines, \
            os.write, self.fd
        n = 0
        while True:
            events = decode(records(BATCH))
            if not events:
                return n
            n += len(events)
            data = lines(events)
            while data:  # a regular file takes it all at once; a pipe may not
                data = data[write(fd, data):]


@pytest.fixture(scope="module")
def ring() -> Iterator[tuple[_sys.Fd, Producer, RingReader]]:
    _kernel_or_skip()
    with (
        create_ring(RING_SIZE, "bench_pipe") as fd,
        load_block_producer(fd, root_cgid()) as producer,
        RingReader(fd) as reader,
    ):
        yield fd, producer, reader


def fill(producer: Producer, reader: RingReader, n: int = RECORDS) -> None:
    """Put *n* block records into the (empty) ring; refuse a fill with drops."""
    before, dropped = producer.next_seq, producer.dropped
    producer.run(n)
    if producer.next_seq - before != n or producer.dropped != dropped:
        raise AssertionError(f"fill: {producer.next_seq - before} of {n} records, {producer.dropped - dropped} drops")
    assert reader.available_bytes == n * record_span(RECORD_SIZE)


def raw_drain_floor(producer: Producer, reader: RingReader, repeats: int = 3) -> float:
    """The best of *repeats* drains (records/s) that take each memoryview from ``records()`` and drop it."""
    best = 0.0
    for _ in range(repeats):
        fill(producer, reader)
        start = time.perf_counter()
        n = 0
        for _rec in reader.records():
            n += 1
        best = max(best, n / (time.perf_counter() - start))
    return best


def rss_kib() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, RssShmem of this process in KiB (/proc/self/status, proc(5))."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    return out


def test_batch_path_writes_the_same_bytes_as_one_decode_and_append_per_record(ring) -> None:
    """Not a timing: the fast path's output equals the per-record path's, record for record."""
    _, producer, reader = ring
    fill(producer, reader, 4096)
    copies = [bytes(rec) for rec in reader.records()]
    seq0 = producer.next_seq - 4096
    assert copies == [expected_record(seq0 + i, root_cgid()) for i in range(4096)]
    one = RecordDecoder(CgroupCache())
    encoder = LineEncoder()
    slow = bytearray()
    for rec in copies:
        encoder.append(one.decode(memoryview(rec)), slow)
    fast = encoder.lines(RecordDecoder(CgroupCache()).decode_batch(memoryview(rec) for rec in copies))
    assert fast == bytes(slow) and fast.count(b"\n") == 4096


def test_block_events_from_kernel_ring_to_json_lines_file(benchmark, ring) -> None:
    fd, producer, reader = ring
    walk = header_walk_floor(fd, producer, reader)
    drain = raw_drain_floor(producer, reader)
    rss_before = rss_kib()
    with tempfile.TemporaryFile(prefix="pybpfguard-bench-") as out:
        pipeline = Pipeline(reader, out.fileno())

        def setup() -> None:
            os.ftruncate(out.fileno(), 0)
            os.lseek(out.fileno(), 0, os.SEEK_SET)
            fill(producer, reader)

        counts: list[int] = []
        benchmark.pedantic(lambda: counts.append(pipeline.drain()), setup=setup, rounds=ROUNDS, iterations=1)
        written = os.lseek(out.fileno(), 0, os.SEEK_CUR)
        os.lseek(out.fileno(), 0, os.SEEK_SET)
        first = out.readline()
    assert counts == [RECORDS] * ROUNDS and written > 0 and first.startswith(b'{"type":"block","pid":')
    rate = RECORDS / benchmark.stats.stats.min
    rss_after = rss_kib()
    benchmark.extra_info.update(
        records=RECORDS, record_bytes=RECORD_SIZE, batch=BATCH, bytes_per_line=round(written / RECORDS, 1),
        events_per_s=round(rate), median_events_per_s=round(RECORDS / benchmark.stats.stats.median),
        walk_floor_per_s=round(walk), drain_floor_per_s=round(drain),
        ratio_to_walk=round(rate / walk, 3), ratio_to_drain=round(rate / drain, 3),
        ring_drops=producer.dropped, rss_anon_kib_before=rss_before["RssAnon"],
        rss_anon_kib_after=rss_after["RssAnon"], loadavg_1m=os.getloadavg()[0],
    )


def _produce_paced(producer: Producer, rate: float, duration_s: float) -> None:
    """Run *producer* at *rate* records/s for *duration_s* seconds (in the forked child)."""
    start = time.perf_counter()
    produced = 0
    while (elapsed := time.perf_counter() - start) < duration_s:
        due = int(elapsed * rate) - produced
        if due > 0:
            producer.run(due)
            produced += due
        else:
            time.sleep(0.0005)


def sustained(producer: Producer, reader: RingReader, rate: float, duration_s: float, out_fd: int) -> dict:
    """Produce at *rate* records/s from a forked child for *duration_s* while this process drains; counts.

    The child shares the loaded producer (program fd, counters mapping) and leaves with ``os._exit``, so
    nothing of this process is finalized twice. A separate process, not a thread: the kernel's real
    producers are other processes, and a producer thread would compete with the drain for the GIL.
    """
    seq_before, dropped_before = producer.next_seq, producer.dropped
    pipeline = Pipeline(reader, out_fd)
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            _produce_paced(producer, rate, duration_s)
        finally:
            os._exit(0)
    drained = 0
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        got = pipeline.drain()
        drained += got
        if not got:
            reader.wait(0.01)
    drained += pipeline.drain()
    elapsed = time.perf_counter() - start
    submitted = producer.next_seq - seq_before
    drops = producer.dropped - dropped_before
    return {"target_per_s": rate, "produced": submitted + drops, "drained": drained, "drops": drops,
            "achieved_per_s": round(drained / elapsed)}


@pytest.mark.parametrize("rate", SUSTAINED_RATES)
def test_sustained_production_at_target_rate_into_default_size_ring_drops(benchmark, rate: int) -> None:
    _kernel_or_skip()
    results: list[dict] = []
    with (
        create_ring(DAEMON_RING_SIZE, "bench_sust") as fd,
        load_block_producer(fd, root_cgid()) as producer,
        RingReader(fd) as reader,
        tempfile.TemporaryFile(prefix="pybpfguard-bench-") as out,
    ):
        def one() -> None:
            os.ftruncate(out.fileno(), 0)
            os.lseek(out.fileno(), 0, os.SEEK_SET)
            results.append(sustained(producer, reader, rate, SUSTAINED_S, out.fileno()))

        benchmark.pedantic(one, rounds=3, iterations=1)
    best = min(results, key=lambda r: r["drops"])
    benchmark.extra_info.update(ring_bytes=DAEMON_RING_SIZE, duration_s=SUSTAINED_S, rounds=results,
                                fewest_drops=best["drops"], loadavg_1m=os.getloadavg()[0])
    assert all(r["drained"] + r["drops"] == r["produced"] for r in results)


def test_pipeline_process_rss_idle_and_after_each_million_events(benchmark) -> None:
    _kernel_or_skip()
    runs: list[dict] = []

    def child() -> None:
        out = subprocess.run([sys.executable, __file__, "--rss"], capture_output=True, text=True, timeout=300,
                             check=True)
        runs.append(json.loads(out.stdout))

    benchmark.pedantic(child, rounds=1, iterations=1)
    benchmark.extra_info.update(runs[0])


def rss_run(millions: int = 3) -> dict:
    """In this (fresh) process: RSS after set-up, then after each 2**20 events through the pipeline."""
    with (
        create_ring(RING_SIZE, "bench_rss") as fd,
        load_block_producer(fd, root_cgid()) as producer,
        RingReader(fd) as reader,
        open(os.devnull, "wb") as sink,
    ):
        pipeline = Pipeline(reader, sink.fileno())
        result: dict = {"idle_kib": rss_kib(), "after_kib": []}
        for _ in range(millions):
            fill(producer, reader)
            assert pipeline.drain() == RECORDS
            result["after_kib"].append(rss_kib())
    result["events_per_step"] = RECORDS
    return result


if __name__ == "__main__":
    if sys.argv[1:] == ["--rss"]:
        print(json.dumps(rss_run()))
    else:
        sys.exit(pytest.main([__file__, "--benchmark-columns=min,median,rounds", *sys.argv[1:]]))
