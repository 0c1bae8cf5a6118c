"""Sink throughput: decoded ``block`` events through ``StdoutSink`` into a file, by the public API only.

The timed region is what the daemon does per ring batch (``emit_many`` of :data:`BATCH` events) or per
responder event (``emit``), then one ``flush`` so that every line reached the file. Events are decoded
before timing (the decoder is ``bench_events``'s subject). The output's bytes are checked against
``LineEncoder`` lines, so a faster sink that writes other bytes fails.

Run: ``python3 -m pytest -o addopts="" benchmarks/bench_sinks.py -q`` or ``python3 benchmarks/bench_sinks.py``
(prints events/s of the best of :data:`ROUNDS`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.* importable when run as a script
from benchmarks.bench_events import build_ring, walk
from pybpfguard.agent.cgroups import CgroupCache
from pybpfguard.agent.events.decode import RecordDecoder
from pybpfguard.agent.events.encode import LineEncoder
from pybpfguard.agent.events.stdout import StdoutSink

N_EVENTS = 100_000
BATCH = 1024  # the daemon's ring batch (daemon._RING_BATCH)
ROUNDS = 5


def decoded_events(n: int = N_EVENTS) -> list[msgspec.Struct]:
    ring = memoryview(build_ring(n))
    assert walk(ring) == n
    decode = RecordDecoder(CgroupCache()).decode
    events, pos = [], 0
    while pos < len(ring):
        length = int.from_bytes(ring[pos:pos + 4], "little")
        events.append(decode(ring[pos + 8:pos + 8 + length]))
        pos += 8 + ((length + 7) & ~7)
    return events


def by_batch(sink: StdoutSink, events: list[msgspec.Struct]) -> None:
    for i in range(0, len(events), BATCH):
        sink.emit_many(events[i:i + BATCH])


def by_event(sink: StdoutSink, events: list[msgspec.Struct]) -> None:
    for event in events:
        sink.emit(event)


def best_rate(feed: Callable[[StdoutSink, list[msgspec.Struct]], None], events: list[msgspec.Struct],
              rounds: int = ROUNDS) -> float:
    """Events per second of the best of *rounds*: emit everything, flush, bytes checked."""
    expected = LineEncoder().lines(events)
    best = float("inf")
    for _ in range(rounds):
        with tempfile.TemporaryFile(prefix="pybpfguard-bench-") as f:
            sink = StdoutSink(f.fileno(), max_backlog_bytes=1 << 30)
            t0 = time.perf_counter()
            feed(sink, events)
            assert sink.flush(60)
            best = min(best, time.perf_counter() - t0)
            sink.close()
            f.seek(0)
            assert f.read() == expected
    return len(events) / best


def measure() -> dict[str, float]:
    events = decoded_events()
    return {"emit_many": best_rate(by_batch, events), "emit": best_rate(by_event, events)}


def test_stdout_sink_events_per_second() -> None:
    rates = measure()
    print(" ".join(f"{k}={v:,.0f}/s" for k, v in rates.items()))


if __name__ == "__main__":
    for key, rate in measure().items():
        print(f"{key:>9}: {rate:>12,.0f} events/s")
    os._exit(0)
