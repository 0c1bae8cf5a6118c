"""Element commands, flags, errors that name the map, freeze, mmap, and rule-set swaps through maps of maps."""

from __future__ import annotations

import errno

import pytest

from pybpfguard.bpf.errors import KeyNotFoundError, NoSpaceError, PermissionDeniedError, SyscallError
from pybpfguard.bpf.layout import Scalar
from pybpfguard.bpf.maps import BPF_EXIST, BPF_NOEXIST, Map, MapFlags, MapSpec, MapType

pytestmark = pytest.mark.kernel

T = MapType
U32, U64 = Scalar("u32"), Scalar("u64")


def hash_spec(name: str = "ops", max_entries: int = 16, **kw) -> MapSpec:
    return MapSpec(T.BPF_MAP_TYPE_HASH, max_entries, key_layout=U32, value_layout=U64, name=name, **kw)


def test_lookup_miss_is_a_key_error_with_enoent_that_names_the_map():
    with Map.create(hash_spec("deny_path")) as m:
        with pytest.raises(KeyNotFoundError) as info:
            m.lookup_elem(1)
        err = info.value
        assert isinstance(err, KeyError) and err.errno == errno.ENOENT and err.cmd == "BPF_MAP_LOOKUP_ELEM"
        assert "map 'deny_path'" in str(err)
        assert m.get(1) is None and m.get(1, 5) == 5


def test_update_flags_noexist_refuses_present_keys_and_exist_refuses_absent_ones():
    with Map.create(hash_spec()) as m:
        m.update_elem(1, 10, BPF_NOEXIST)
        with pytest.raises(SyscallError) as info:
            m.update_elem(1, 11, BPF_NOEXIST)
        assert info.value.errno == errno.EEXIST
        with pytest.raises(KeyNotFoundError):
            m.update_elem(2, 20, BPF_EXIST)
        m.update_elem(1, 12, BPF_EXIST)
        assert m.lookup_elem(1) == 12


def test_full_hash_map_refuses_a_new_key_with_e2big():
    with Map.create(hash_spec(max_entries=2)) as m:
        m.update_elem(1, 1)
        m.update_elem(2, 2)
        with pytest.raises(NoSpaceError) as info:
            m.update_elem(3, 3)
        assert info.value.errno == errno.E2BIG


def test_delete_and_lookup_and_delete_remove_the_key():
    with Map.create(hash_spec()) as m:
        m.update_elem(1, 10)
        m.update_elem(2, 20)
        m.delete_elem(1)
        assert m.lookup_and_delete_elem(2) == 20
        assert list(m.keys()) == []
        with pytest.raises(KeyNotFoundError):
            m.delete_elem(1)


def test_get_next_key_walks_every_key_then_answers_none():
    with Map.create(hash_spec()) as m:
        for k in (5, 6, 7):
            m.update_elem(k, k)
        seen, key = [], m.get_next_key()
        while key is not None:
            seen.append(key)
            key = m.get_next_key(key)
        assert sorted(seen) == [5, 6, 7]


def test_keys_and_values_accept_raw_bytes_of_the_exact_size_only():
    with Map.create(MapSpec(T.BPF_MAP_TYPE_HASH, 4, key_size=4, value_size=2, name="raw")) as m:
        m.update_elem(b"abcd", b"xy")
        m.update_elem(7, 9)  # ints fit 1/2/4/8-byte keys and values without a layout
        assert m.lookup_elem(b"abcd") == b"xy" and m.lookup_elem(7) == b"\x09\x00"
        with pytest.raises(ValueError, match="map 'raw' key: 3 bytes, want 4"):
            m.update_elem(b"abc", b"xy")


def test_freeze_makes_syscall_updates_fail_with_eperm():
    with Map.create(hash_spec("frozen")) as m:
        m.update_elem(1, 1)
        m.freeze()
        with pytest.raises(PermissionDeniedError) as info:
            m.update_elem(1, 2)
        assert info.value.errno == errno.EPERM and "map 'frozen'" in str(info.value)
        with pytest.raises(PermissionDeniedError):
            m.delete_elem(1)
        assert m.lookup_elem(1) == 1


def test_mmapable_array_writes_through_mmap_are_visible_to_lookup_and_back():
    spec = MapSpec(T.BPF_MAP_TYPE_ARRAY, 8, key_layout=U32, value_layout=U32, name="mm", flags=MapFlags.BPF_F_MMAPABLE)
    with Map.create(spec) as m, m.mmap() as mem:
        mem[3 * 8 : 3 * 8 + 4] = U32.pack(0xDEADBEEF)  # element stride: value_size rounded up to 8
        assert m.lookup_elem(3) == 0xDEADBEEF
        m.update_elem(5, 42)
        assert U32.unpack(mem[5 * 8 : 5 * 8 + 4]) == 42


def test_frozen_mmapable_array_refuses_a_writable_mapping_but_allows_reading():
    spec = MapSpec(
        T.BPF_MAP_TYPE_ARRAY, 1, key_layout=U32, value_layout=U32, name="mmro", flags=MapFlags.BPF_F_MMAPABLE
    )
    with Map.create(spec) as m:
        m.update_elem(0, 9)
        m.freeze()
        with pytest.raises(PermissionError):
            m.mmap()
        with m.mmap(writable=False) as mem:
            assert U32.unpack(mem[:4]) == 9


def test_array_of_maps_swaps_a_whole_rule_set_in_one_update():
    inner = hash_spec("rules")
    outer_spec = MapSpec(T.BPF_MAP_TYPE_ARRAY_OF_MAPS, 1, key_layout=U32, name="rule_sets", inner=inner)
    with Map.create(outer_spec) as outer, Map.create(inner) as old, Map.create(inner) as new:
        old.update_elem(1, 100)
        outer.update_elem(0, old)
        assert outer.lookup_elem(0) == old.info().id  # lookups give the inner map's id, never an fd
        for k in range(5):
            new.update_elem(k, k)  # fill the complete new set before it becomes visible
        outer.update_elem(0, new)
        assert outer.lookup_elem(0) == new.info().id
        with outer.lookup_map(0) as current:
            assert dict(current.items()) == {k: k for k in range(5)}


def test_hash_of_maps_refuses_an_inner_map_of_another_shape():
    inner = hash_spec("rules")
    outer_spec = MapSpec(T.BPF_MAP_TYPE_HASH_OF_MAPS, 4, key_layout=U32, name="by_cgroup", inner=inner)
    other = MapSpec(T.BPF_MAP_TYPE_HASH, 16, key_size=8, value_size=8, name="other")
    with Map.create(outer_spec) as outer, Map.create(other) as wrong:
        with pytest.raises(SyscallError) as info:
            outer.update_elem(1, wrong)
        assert info.value.errno == errno.EINVAL and "map 'by_cgroup'" in str(info.value)


def test_closed_map_refuses_element_commands_instead_of_using_a_stale_fd_number():
    m = Map.create(hash_spec("closed"))
    m.close()
    m.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        m.lookup_elem(1)
