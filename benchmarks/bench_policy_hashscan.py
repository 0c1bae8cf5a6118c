"""Binary-hash scan of /usr/bin (issue 9, ``[deny_binary_hash]`` / ``[allow_binary_hash]``): files/s and MB/s.

1. :func:`pybpfguard.agent.policy.hashscan.scan_tree` of /usr/bin with 1, 2 and 4 hashing threads (page
   cache warm: one unmeasured scan first). Floor: the same files read into a buffer with no hashing, one
   thread, same run, so the ratio shows what SHA-256 and the trust checks cost on top of the reads.
2. The same files hashed with a process pool (``hash_file`` through ``ProcessPoolExecutor``, 2 and 4
   workers, chunks of 16 files), the alternative :mod:`~pybpfguard.agent.policy.hashscan` was measured
   against; its docstring names the winner.

Run: ``python3 -m pytest -o addopts="" benchmarks/bench_policy_hashscan.py --benchmark-columns=min,median,rounds``
(rates in ``extra_info``; ``python3 benchmarks/bench_policy_hashscan.py`` prints them as JSON lines).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from pybpfguard.agent.policy.hashscan import Skipped, _walk, hash_file, scan_roots, scan_tree

ROOT = b"/usr/bin"
ROUNDS = 5


def _listed() -> list[bytes]:
    walked, _ = scan_roots([ROOT])
    return [f.path for f in _walk(walked, [])]


def _read_floor_s(paths: list[bytes]) -> float:
    """Seconds to open, read (1 MiB chunks into one buffer) and close every file, no hashing."""
    buf = bytearray(1 << 20)
    start = time.perf_counter()
    for p in paths:
        try:
            with open(p, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
        except OSError:
            continue
    return time.perf_counter() - start


def _rates(seconds: list[float], files: int, nbytes: int) -> dict:
    med = statistics.median(seconds)
    return {"median_s": round(med, 4), "best_s": round(min(seconds), 4), "files_per_s": round(files / med),
            "mb_per_s": round(nbytes / med / 1e6, 1)}


def measure_threads(workers: int) -> dict:
    scan_tree([ROOT], set(), progress=False, workers=workers)  # warm the page cache
    results = [scan_tree([ROOT], set(), progress=False, workers=workers) for _ in range(ROUNDS)]
    r = results[-1]
    floor = statistics.median(_read_floor_s(_listed()) for _ in range(ROUNDS))
    out = {"pool": "threads", "workers": workers, "files": r.files, "bytes": r.bytes, "skipped": len(r.skipped),
           **_rates([x.seconds for x in results], r.files, r.bytes),
           "floor_read_only_files_per_s": round(r.files / floor)}
    out["ratio_to_floor"] = round(out["files_per_s"] / out["floor_read_only_files_per_s"], 3)
    return out


def measure_processes(workers: int) -> dict:
    paths = _listed()
    times, files, nbytes = [], 0, 0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        with ProcessPoolExecutor(workers) as pool:
            outs = list(pool.map(hash_file, paths, chunksize=16))
        times.append(time.perf_counter() - start)
        done = [o for o in outs if not isinstance(o, Skipped)]
        files, nbytes = len(done), sum(size for _, size in done)
    return {"pool": "processes", "workers": workers, "files": files, "bytes": nbytes, **_rates(times, files, nbytes)}


@pytest.fixture(autouse=True)
def usr_bin() -> None:
    if not os.path.isdir(ROOT):
        pytest.skip("no /usr/bin on this host")


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_scan_of_usr_bin_with_threads(benchmark, workers):
    result = benchmark.pedantic(measure_threads, args=(workers,), rounds=1, iterations=1)
    benchmark.extra_info.update(result)


@pytest.mark.parametrize("workers", [2, 4])
def test_scan_of_usr_bin_with_processes(benchmark, workers):
    result = benchmark.pedantic(measure_processes, args=(workers,), rounds=1, iterations=1)
    benchmark.extra_info.update(result)


if __name__ == "__main__":
    for n in (1, 2, 4):
        print(json.dumps(measure_threads(n)))
    for n in (2, 4):
        print(json.dumps(measure_processes(n)))
