"""Event pipeline throughput: pre-built `block` records in a ring-shaped buffer -> JSON lines in a file.

The buffer holds records as the kernel ring does: an 8-byte ``struct bpf_ringbuf_hdr`` (u32 len,
u32 pg_off; kernel/bpf/ringbuf.c) before each payload, payloads padded to 8 bytes. Measured in the
same run, on the same buffer:

- floor ``walk``: the header walk only (read len, step to the next record);
- floor ``unpack``: the walk plus one ``unpack_from`` of the block header per record;
- ``pipeline``: the walk, ``RecordDecoder.decode`` (Struct, ids, cgroup path, text), ``LineEncoder``
  into a reused ``bytearray``, and a ``write`` to a file every 1 MiB.

Run: ``python -m pytest benchmarks/bench_events.py --benchmark-only -p no:cacheprovider`` or
``python benchmarks/bench_events.py`` (prints rates and ratios). One core (the code is one thread).
"""

from __future__ import annotations

import os
import platform
import struct
import tempfile
import time
from collections.abc import Callable

from pybpfguard.agent.cgroups import CgroupCache
from pybpfguard.agent.events.decode import RecordDecoder
from pybpfguard.agent.events.encode import LineEncoder
from pybpfguard.agent.events.records import BLOCK, ActionCode

N_RECORDS = 200_000
HDR = struct.Struct("<II")  # struct bpf_ringbuf_hdr: u32 len, u32 pg_off
FLUSH_BYTES = 1 << 20


def build_ring(n: int = N_RECORDS) -> bytes:
    """*n* block records with realistic paths (30-60 bytes), each behind a ringbuf header, 8-aligned."""
    out = bytearray()
    for i in range(n):
        rec = BLOCK.pack(pid=1000 + i % 5000, ppid=999, start_time=123_456_789_000 + i, parent_start_time=1_000,
                         cgid=1, comm=b"cat", ino=4_000_000 + i % 97, dev=271_581_186,
                         action=ActionCode.TERM if i % 3 else ActionCode.AUDIT,
                         path=b"/var/lib/app/data/secret-%d.db" % (i % 97) + b"x" * (i % 23))
        out += HDR.pack(len(rec), 0)
        out += rec
        out += bytes(-len(rec) % 8)
    return bytes(out)


def walk(ring: memoryview) -> int:
    """Floor 1: header walk only."""
    pos, n, end, unpack = 0, 0, len(ring), HDR.unpack_from
    while pos < end:
        length = unpack(ring, pos)[0]
        pos += 8 + ((length + 7) & ~7)
        n += 1
    return n


def walk_unpack(ring: memoryview) -> int:
    """Floor 2: header walk plus one unpack of the block record's fixed part."""
    pos, n, end, unpack, rec_unpack = 0, 0, len(ring), HDR.unpack_from, BLOCK.struct.unpack_from
    while pos < end:
        length = unpack(ring, pos)[0]
        rec_unpack(ring, pos + 8)
        pos += 8 + ((length + 7) & ~7)
        n += 1
    return n


def make_pipeline(fd: int) -> Callable[[memoryview], int]:
    decode = RecordDecoder(CgroupCache()).decode
    append = LineEncoder().append

    def pipeline(ring: memoryview) -> int:
        pos, n, end, unpack = 0, 0, len(ring), HDR.unpack_from
        out = bytearray()
        while pos < end:
            length = unpack(ring, pos)[0]
            append(decode(ring[pos + 8:pos + 8 + length]), out)
            pos += 8 + ((length + 7) & ~7)
            n += 1
            if len(out) >= FLUSH_BYTES:
                os.write(fd, out)
                out.clear()
        os.write(fd, out)
        return n

    return pipeline


def best_rate(fn: Callable[[memoryview], int], ring: memoryview, rounds: int = 5) -> float:
    """Records per second of the best of *rounds* runs."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        n = fn(ring)
        best = min(best, time.perf_counter() - t0)
    return n / best


def measure(rounds: int = 5) -> dict[str, float]:
    ring = memoryview(build_ring())
    with tempfile.TemporaryFile() as f:
        pipeline = make_pipeline(f.fileno())

        def pipeline_fresh_file(view: memoryview) -> int:
            os.ftruncate(f.fileno(), 0)
            os.lseek(f.fileno(), 0, os.SEEK_SET)
            return pipeline(view)

        rates = {"walk": best_rate(walk, ring, rounds), "unpack": best_rate(walk_unpack, ring, rounds),
                 "pipeline": best_rate(pipeline_fresh_file, ring, rounds)}
    rates["pipeline_over_walk"] = rates["pipeline"] / rates["walk"]
    rates["pipeline_over_unpack"] = rates["pipeline"] / rates["unpack"]
    return rates


def test_block_pipeline_records_to_json_file(benchmark) -> None:  # type: ignore[no-untyped-def]
    ring = memoryview(build_ring())
    floors = {"walk_per_s": best_rate(walk, ring), "unpack_per_s": best_rate(walk_unpack, ring)}
    with tempfile.TemporaryFile() as f:
        fd = f.fileno()

        def fresh_file() -> tuple[tuple[memoryview], dict]:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            return (ring,), {}

        n = benchmark.pedantic(make_pipeline(fd), setup=fresh_file, rounds=5, iterations=1)
        written = os.lseek(fd, 0, os.SEEK_CUR)
    rate = n / benchmark.stats.stats.min
    benchmark.extra_info.update(floors, records=n, bytes_written=written, pipeline_per_s=rate,
                                ratio_to_walk=rate / floors["walk_per_s"],
                                ratio_to_unpack=rate / floors["unpack_per_s"])


if __name__ == "__main__":
    r = measure()
    print(f"kernel {platform.release()}, Python {platform.python_version()}, {N_RECORDS} block records")
    for key in ("walk", "unpack", "pipeline"):
        print(f"{key:>9}: {r[key]:>12,.0f} records/s")
    print(f"pipeline / walk = {r['pipeline_over_walk']:.3f}, pipeline / unpack = {r['pipeline_over_unpack']:.3f}")
