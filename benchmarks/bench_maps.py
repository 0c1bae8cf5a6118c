"""Map operation rates: single-element update/lookup ops/s, and a 65,536-entry hash batch update.

Each benchmark measures its floor in the same process on the same map:
- single-element paths: the same command issued through bare ``_sys.bpf()`` with an attr and buffers built
  once (the ctypes call plus the kernel's work, nothing of ours), so the ratio shows what encoding keys and
  values, allocating buffers and naming the map cost per call;
- batch update: BPF_MAP_UPDATE_BATCH through ``_sys.maps.map_batch`` with the key and value buffers already
  built (the kernel's insertion work), next to our ``Map.update_batch`` from Python ints (encode + the same
  call) and from packed bytes.
``extra_info`` carries ``ops_per_s``/``ms`` (best round), ``floor_*`` and ``ratio_to_floor``.

Run: ``python3 -m pytest -o addopts="" benchmarks/bench_maps.py --benchmark-columns=min,median,rounds``
Target (issue 3): batch update of 65,536 hash entries <= 50 ms.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable, Iterator

import pytest

from pybpfguard.bpf import _sys
from pybpfguard.bpf._sys.maps import MapElemAttr, map_batch
from pybpfguard.bpf.layout import Layout, Scalar
from pybpfguard.bpf.maps import Map, MapSpec, MapType

BATCH = 65_536
OPS = 20_000  # single-element calls per round
U8, U32, U64 = Scalar("u8"), Scalar("u32"), Scalar("u64")


@pytest.fixture
def hash_map() -> Iterator[Map]:
    if os.geteuid() != 0:
        pytest.skip("needs root for bpf()")
    spec = MapSpec(MapType.BPF_MAP_TYPE_HASH, BATCH, key_layout=U32, value_layout=U64, name="bench_hash")
    with Map.create(spec) as m:
        yield m


def _best_rate(fn: Callable[[], None], n: int, repeats: int = 5) -> float:
    """Best of *repeats* runs of *fn* (which does *n* operations), in operations per second."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def _bare_elem_floor(m: Map, cmd: _sys.BpfCmd) -> float:
    """ops/s of *cmd* through bare bpf() with one prebuilt attr (key 1, value buffer of 8 bytes)."""
    key = ctypes.create_string_buffer(U32.pack(1), 4)
    value = ctypes.create_string_buffer(U64.pack(7), 8)
    attr = MapElemAttr(map_fd=m.fd.raw, key=ctypes.addressof(key), value=ctypes.addressof(value))
    bpf = _sys.bpf

    def run() -> None:
        for _ in range(OPS):
            bpf(cmd, attr)

    return _best_rate(run, OPS)


def _record(benchmark, ops: float, floor: float) -> None:  # type: ignore[no-untyped-def]
    best = OPS / benchmark.stats.stats.min
    median = OPS / benchmark.stats.stats.median
    benchmark.extra_info.update(
        ops_per_s=round(best),
        median_ops_per_s=round(median),
        floor_ops_per_s=round(floor),
        ratio_to_floor=round(best / floor, 3),
    )


def test_single_update_elem_rate(benchmark, hash_map):
    hash_map.update_elem(1, 7)
    floor = _bare_elem_floor(hash_map, _sys.BpfCmd.BPF_MAP_UPDATE_ELEM)
    update = hash_map.update_elem

    def run() -> None:
        for _ in range(OPS):
            update(1, 7)

    benchmark.pedantic(run, rounds=7, iterations=1)
    _record(benchmark, OPS, floor)


def test_single_lookup_elem_rate(benchmark, hash_map):
    hash_map.update_elem(1, 7)
    floor = _bare_elem_floor(hash_map, _sys.BpfCmd.BPF_MAP_LOOKUP_ELEM)
    lookup = hash_map.lookup_elem

    def run() -> None:
        for _ in range(OPS):
            lookup(1)

    benchmark.pedantic(run, rounds=7, iterations=1)
    _record(benchmark, OPS, floor)


def _batch_floor(m: Map, keys: bytes, values: bytes, clear: Callable[[], None], repeats: int = 9) -> float:
    """Best seconds for BPF_MAP_UPDATE_BATCH of BATCH entries into an empty map, buffers prebuilt."""
    kbuf = (ctypes.c_char * len(keys)).from_buffer_copy(keys)
    vbuf = (ctypes.c_char * len(values)).from_buffer_copy(values)
    best = float("inf")
    for _ in range(repeats):
        clear()
        start = time.perf_counter()
        done, err = map_batch(_sys.BpfCmd.BPF_MAP_UPDATE_BATCH, m.fd, keys=kbuf, values=vbuf, count=BATCH)
        best = min(best, time.perf_counter() - start)
        assert err is None and done == BATCH
    return best


INODE_KEY = Layout("inode_key", [("ino", "u64"), ("dev", "u32"), ("pad", "u32")])  # docs/maps.md


def _batch_case(source: str) -> tuple[MapSpec, list, list]:
    """(spec, keys, values) for one batch source: u32 -> u64 ints, or the agent's deny_inode shape."""
    if source == "inode_key_values":
        spec = MapSpec(MapType.BPF_MAP_TYPE_HASH, BATCH, key_layout=INODE_KEY, value_layout=U8, name="bench_inode")
        return spec, [INODE_KEY.value(ino=k, dev=271581186) for k in range(BATCH)], [1] * BATCH
    spec = MapSpec(MapType.BPF_MAP_TYPE_HASH, BATCH, key_layout=U32, value_layout=U64, name="bench_hash")
    return spec, list(range(BATCH)), [k * 3 for k in range(BATCH)]


@pytest.mark.parametrize("source", ["python_ints", "packed_bytes", "inode_key_values"])
def test_batch_update_of_65536_hash_entries(benchmark, source):
    if os.geteuid() != 0:
        pytest.skip("needs root for bpf()")
    spec, keys, values = _batch_case(source)
    with Map.create(spec) as m:
        packed_keys, packed_values = m.key_codec.encode_many(keys), m.value_codec.encode_many(values)

        def clear() -> None:
            if next(iter(m.keys()), None) is not None:
                m.delete_batch(packed_keys)

        floor_s = _batch_floor(m, packed_keys, packed_values, clear)
        start = time.perf_counter()
        m.key_codec.encode_many(keys), m.value_codec.encode_many(values)
        encode_s = time.perf_counter() - start
        args = (packed_keys, packed_values) if source == "packed_bytes" else (keys, values)

        def run() -> None:
            assert m.update_batch(*args) == BATCH

        benchmark.pedantic(run, setup=clear, rounds=9, iterations=1)
        best = benchmark.stats.stats.min
        benchmark.extra_info.update(
            ms=round(best * 1e3, 2),
            median_ms=round(benchmark.stats.stats.median * 1e3, 2),
            floor_ms=round(floor_s * 1e3, 2),
            encode_ms=round(encode_s * 1e3, 2),
            ratio_to_floor=round(best / floor_s, 3),
            target_ms=50,
        )
        assert len(m.lookup_batch()) == BATCH
