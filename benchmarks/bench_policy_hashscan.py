"""Binary-hash scan of /usr/bin (issue 9, ``[deny_binary_hash]`` / ``[allow_binary_hash]``): files/s and MB/s.

1. :func:`pybpfguard.agent.policy.hashscan.scan_tree` of /usr/bin as ``policy apply`` runs it (default
   threads; page cache warm: one unmeasured scan first), 5 rounds. Floor: the same files read into a buffer
   with no hashing, one thread, same run, so the ratio shows what SHA-256 and the trust checks cost.
2. Threads (1, 2, 4) against a process pool (``hash_file`` through ``ProcessPoolExecutor``, 2 and 4
   workers, chunks of 16 files) on the same files, alternated round by round (10 rounds): the numbers
   the thread pool of :mod:`~pybpfguard.agent.policy.hashscan` was chosen by.

Run: ``python3 -m pytest -o addopts="" benchmarks/bench_policy_hashscan.py --benchmark-columns=min,median,rounds``
(rates in ``extra_info``; ``python3 benchmarks/bench_policy_hashscan.py`` prints them as JSON lines).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
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


def measure_scan(workers: int | None = None) -> dict:
    """:func:`scan_tree` of /usr/bin with *workers* threads (default: the module's), against the read-only floor."""
    scan_tree([ROOT], set(), progress=False, workers=workers)  # warm the page cache
    results = [scan_tree([ROOT], set(), progress=False, workers=workers) for _ in range(ROUNDS)]
    r = results[-1]
    floor = statistics.median(_read_floor_s(_listed()) for _ in range(ROUNDS))
    out = {"pool": "threads", "workers": workers or "default", "files": r.files, "bytes": r.bytes,
           "skipped": len(r.skipped), **_rates([x.seconds for x in results], r.files, r.bytes),
           "floor_read_only_files_per_s": round(r.files / floor)}
    out["ratio_to_floor"] = round(out["files_per_s"] / out["floor_read_only_files_per_s"], 3)
    return out


def _threads_s(workers: int) -> float:
    return scan_tree([ROOT], set(), progress=False, workers=workers).seconds


def _processes_s(paths: list[bytes], workers: int) -> float:
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        outs = list(pool.map(hash_file, paths, chunksize=16))
    assert not any(isinstance(o, Skipped) for o in outs)
    return time.perf_counter() - start


def measure_pools(rounds: int = 2 * ROUNDS) -> dict:
    """Threads (1, 2, 4) and processes (2, 4) hashing the same files, alternated round by round so a changing
    host load hits each alike; medians and bests in files/s."""
    paths = _listed()
    ways: dict[str, Callable[[], float]] = {
        "threads_1": lambda: _threads_s(1), "threads_2": lambda: _threads_s(2), "threads_4": lambda: _threads_s(4),
        "processes_2": lambda: _processes_s(paths, 2), "processes_4": lambda: _processes_s(paths, 4)}
    times: dict[str, list[float]] = {k: [] for k in ways}
    _threads_s(2)  # warm the page cache
    for _ in range(rounds):
        for k, fn in ways.items():
            times[k].append(fn())
    out: dict = {"files": len(paths), "rounds": rounds}
    for k, ts in times.items():
        out[f"{k}_median_files_per_s"] = round(len(paths) / statistics.median(ts))
        out[f"{k}_best_files_per_s"] = round(len(paths) / min(ts))
    return out


@pytest.fixture(autouse=True)
def usr_bin() -> None:
    if not os.path.isdir(ROOT):
        pytest.skip("no /usr/bin on this host")


def test_scan_of_usr_bin_files_per_s(benchmark):
    benchmark.extra_info.update(benchmark.pedantic(measure_scan, rounds=1, iterations=1))


def test_threads_against_processes_alternately(benchmark):
    benchmark.extra_info.update(benchmark.pedantic(measure_pools, rounds=1, iterations=1))


if __name__ == "__main__":
    print(json.dumps(measure_scan()))
    print(json.dumps(measure_pools()))
