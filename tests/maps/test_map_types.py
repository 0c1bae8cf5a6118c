"""Each map type round-trips through the kernel, and bpftool reads back what we wrote (LOADER case 10)."""

from __future__ import annotations

import mmap

import pytest

from pybpfguard.bpf.cpus import possible_cpus
from pybpfguard.bpf.layout import Layout, Scalar
from pybpfguard.bpf.maps import Map, MapFlags, MapSpec, MapSpecError, MapType
from tests.maps.conftest import bpftool_dump

pytestmark = pytest.mark.kernel

T = MapType
U32, U64 = Scalar("u32"), Scalar("u64")
INODE_KEY = Layout("inode_key", [("ino", "u64"), ("dev", "u32"), ("pad", "u32")])
STATS = Layout("stats", [("blocks", "u32"), ("drops", "u32"), ("errors", "u32")])  # 12 B; per-CPU slots are 16


@pytest.mark.parametrize("map_type", [T.BPF_MAP_TYPE_HASH, T.BPF_MAP_TYPE_LRU_HASH], ids=lambda t: t.short)
def test_hash_with_inode_key_layout_round_trips_and_matches_bpftool(map_type):
    spec = MapSpec(map_type, 64, key_layout=INODE_KEY, value_layout=Scalar("u8"), name="deny_inode")
    with Map.create(spec) as m:
        want = {INODE_KEY.value(ino=i, dev=(259 << 20) | 2): i % 3 for i in range(1, 20)}
        for k, v in want.items():
            m.update_elem(k, v)
        assert {k: m.lookup_elem(k) for k in want} == want
        assert dict(m.items()) == want
        assert bpftool_dump(m) == {INODE_KEY.pack(k): bytes([v]) for k, v in want.items()}


def test_array_round_trips_and_matches_bpftool_including_zeroed_slots():
    with Map.create(MapSpec(T.BPF_MAP_TYPE_ARRAY, 8, key_layout=U32, value_layout=U64, name="arr")) as m:
        m.update_elem(3, 1 << 40)
        assert m.lookup_elem(3) == 1 << 40 and m.lookup_elem(0) == 0
        assert list(m.keys()) == list(range(8))
        dump = bpftool_dump(m)
        assert dump[U32.pack(3)] == U64.pack(1 << 40) and len(dump) == 8


@pytest.mark.parametrize(
    "map_type",
    [T.BPF_MAP_TYPE_PERCPU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH, T.BPF_MAP_TYPE_PERCPU_ARRAY],
    ids=lambda t: t.short,
)
def test_percpu_values_are_one_slot_per_possible_cpu_and_match_bpftool(map_type):
    ncpus = possible_cpus()
    with Map.create(MapSpec(map_type, 4, key_layout=U32, value_layout=STATS, name="pcpu")) as m:
        per_cpu = [STATS.value(blocks=100 + cpu, drops=cpu) for cpu in range(ncpus)]
        m.update_elem(1, per_cpu)
        m.update_elem(2, STATS.value(blocks=7))  # one value broadcast to every CPU
        assert m.lookup_elem(1) == per_cpu
        assert m.lookup_elem(2) == [STATS.value(blocks=7)] * ncpus
        dump = bpftool_dump(m)
        assert len(dump[U32.pack(1)]) == ncpus  # bpftool also sizes by possible CPUs
        assert dump[U32.pack(1)] == [STATS.pack(v) for v in per_cpu]  # bpftool prints value_size bytes a CPU
        assert dump[U32.pack(2)] == [STATS.pack(blocks=7)] * ncpus


def test_percpu_update_with_wrong_number_of_values_names_the_map_and_the_cpu_count():
    spec = MapSpec(T.BPF_MAP_TYPE_PERCPU_ARRAY, 1, key_layout=U32, value_layout=U64, name="pc")
    n = possible_cpus()
    with Map.create(spec) as m, pytest.raises(ValueError, match=rf"map 'pc' value: {n + 1} per-CPU values, want {n}"):
        m.update_elem(0, [1] * (n + 1))


def test_lpm_trie_finds_the_longest_prefix_and_matches_bpftool():
    key = Layout("cidr_v4", [("prefixlen", "u32"), ("addr", "be32")])
    spec = MapSpec(
        T.BPF_MAP_TYPE_LPM_TRIE,
        16,
        key_layout=key,
        value_layout=Scalar("u8"),
        name="deny_cidr_v4",
        flags=MapFlags.BPF_F_NO_PREALLOC,
    )
    with Map.create(spec) as m:
        m.update_elem(key.value(prefixlen=8, addr=0x0A000000), 1)  # 10.0.0.0/8
        m.update_elem(key.value(prefixlen=24, addr=0x0A010200), 2)  # 10.1.2.0/24
        assert m.lookup_elem(key.value(prefixlen=32, addr=0x0A010203)) == 2
        assert m.lookup_elem(key.value(prefixlen=32, addr=0x0A090909)) == 1
        assert m.get(key.value(prefixlen=32, addr=0x0B000001)) is None
        assert bpftool_dump(m) == {
            key.pack(prefixlen=8, addr=0x0A000000): b"\x01",
            key.pack(prefixlen=24, addr=0x0A010200): b"\x02",
        }


def test_lpm_trie_without_no_prealloc_is_refused_before_the_kernel_with_the_reason():
    with pytest.raises(MapSpecError, match="LPM_TRIE requires BPF_F_NO_PREALLOC"):
        MapSpec(T.BPF_MAP_TYPE_LPM_TRIE, 16, key_size=8, value_size=1, name="x")


def test_bloom_filter_push_then_peek_has_no_false_negatives():
    spec = MapSpec(T.BPF_MAP_TYPE_BLOOM_FILTER, 1024, value_layout=U64, name="bloom", map_extra=3)
    with Map.create(spec) as m:
        for v in range(0, 200, 2):
            m.push_elem(v)
        assert all(m.peek_elem(v) for v in range(0, 200, 2))
        assert sum(m.peek_elem(v) for v in range(1, 2001, 2)) < 500  # false positives exist but are rare
        assert m.info().map_extra == 3


def test_ringbuf_is_created_with_key_and_value_zero_and_its_size_as_max_entries():
    size = 4 * mmap.PAGESIZE
    with Map.create(MapSpec(T.BPF_MAP_TYPE_RINGBUF, size, name="events")) as m:
        info = m.info()
        assert (info.type, info.key_size, info.value_size, info.max_entries) == (T.BPF_MAP_TYPE_RINGBUF, 0, 0, size)


@pytest.mark.parametrize("size", [mmap.PAGESIZE * 3, 1024])
def test_ringbuf_size_not_a_power_of_two_page_multiple_is_refused_naming_the_limit(size):
    with pytest.raises(MapSpecError, match="power of 2 and a multiple of"):
        MapSpec(T.BPF_MAP_TYPE_RINGBUF, size, name="events")


def test_info_reports_id_name_type_sizes_and_flags():
    spec = MapSpec(
        T.BPF_MAP_TYPE_HASH, 10, key_size=4, value_size=8, name="info_check", flags=MapFlags.BPF_F_NO_PREALLOC
    )
    with Map.create(spec) as m:
        info = m.info()
        assert info.id > 0 and info.name == "info_check"
        assert (info.type, info.key_size, info.value_size, info.max_entries) == (T.BPF_MAP_TYPE_HASH, 4, 8, 10)
        assert info.map_flags == MapFlags.BPF_F_NO_PREALLOC


def test_name_longer_than_the_kernel_keeps_is_refused_not_truncated():
    with pytest.raises(MapSpecError, match="at most 15 bytes"):
        MapSpec(T.BPF_MAP_TYPE_HASH, 1, key_size=4, value_size=4, name="a_name_of_16_chr")
