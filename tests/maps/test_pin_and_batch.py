"""Pinning with a compatibility check, opening by id, and the batch commands against bpftool."""

from __future__ import annotations

import errno

import pytest

from pybpfguard.bpf.cpus import possible_cpus
from pybpfguard.bpf.errors import NotSupportedError
from pybpfguard.bpf.layout import Layout, Scalar
from pybpfguard.bpf.maps import BatchError, Map, MapFlags, MapIncompatibleError, MapSpec, MapType
from tests.maps.conftest import bpftool_dump

pytestmark = pytest.mark.kernel

T = MapType
U32, U64 = Scalar("u32"), Scalar("u64")
INODE_KEY = Layout("inode_key", [("ino", "u64"), ("dev", "u32"), ("pad", "u32")])
SPEC = MapSpec(T.BPF_MAP_TYPE_HASH, 64, key_layout=INODE_KEY, value_layout=Scalar("u8"), name="deny_inode")


def test_pinned_map_reopens_with_a_compatible_spec_and_sees_the_same_elements(bpffs):
    with Map.create(SPEC) as m:
        m.update_elem(INODE_KEY.value(ino=42, dev=7), 1)
        m.pin(bpffs / "deny_inode")
        created_id = m.info().id
    with Map.from_pinned(bpffs / "deny_inode", expect=SPEC) as again:
        assert again.info().id == created_id
        assert again.lookup_elem(INODE_KEY.value(ino=42, dev=7)) == 1
    (bpffs / "deny_inode").unlink()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": T.BPF_MAP_TYPE_LRU_HASH}, "type"),
        ({"key_layout": None, "key_size": 8}, "key_size"),
        ({"value_layout": U32}, "value_size"),
        ({"max_entries": 65536}, "max_entries"),
        ({"flags": MapFlags.BPF_F_NO_PREALLOC}, "map_flags"),
    ],
)
def test_pinned_map_with_an_incompatible_spec_is_refused_naming_the_mismatch(bpffs, change, field):
    path = bpffs / "deny_inode"
    with Map.create(SPEC) as m:
        m.pin(path)
    with pytest.raises(MapIncompatibleError) as info:
        Map.from_pinned(path, expect=SPEC.replace(**change))
    err = info.value
    assert (err.field, err.where) == (field, str(path))
    assert f"{field} is" in str(err) and str(path) in str(err)
    path.unlink()


def test_map_opened_by_id_without_a_spec_describes_itself_from_the_kernel():
    with Map.create(SPEC) as m, Map.from_id(m.info().id) as same:
        spec = same.spec
        assert (spec.type, spec.key_size, spec.value_size, spec.max_entries, spec.name) == (
            T.BPF_MAP_TYPE_HASH,
            16,
            1,
            64,
            "deny_inode",
        )
        m.update_elem(INODE_KEY.value(ino=1), 3)
        assert same.lookup_elem(INODE_KEY.pack(ino=1)) == b"\x03"  # no layout known: raw bytes


@pytest.mark.parametrize(
    "map_type",
    [T.BPF_MAP_TYPE_HASH, T.BPF_MAP_TYPE_LRU_HASH, T.BPF_MAP_TYPE_PERCPU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH],
    ids=lambda t: t.short,
)
def test_batch_update_lookup_delete_agree_with_bpftool(map_type):
    n = 1000
    with Map.create(MapSpec(map_type, 2048, key_layout=U32, value_layout=U64, name="batch")) as m:
        assert m.update_batch(list(range(n)), [k * 3 for k in range(n)]) == n
        got = dict(m.lookup_batch(chunk=64))
        want = {k: ([k * 3] * possible_cpus() if m.spec.percpu else k * 3) for k in range(n)}
        assert got == want
        dump = bpftool_dump(m)
        assert {
            U32.unpack(k): ([U64.unpack(x) for x in v] if m.spec.percpu else U64.unpack(v)) for k, v in dump.items()
        } == want
        assert m.delete_batch(list(range(0, n, 2))) == n // 2
        assert sorted(k for k, _ in m.lookup_batch()) == list(range(1, n, 2))


def test_batch_lookup_grows_the_batch_on_enospc_when_a_bucket_does_not_fit():
    # 1024 keys in a 1024-entry hash: some buckets hold several keys, more than a batch of 1 can take.
    with Map.create(MapSpec(T.BPF_MAP_TYPE_HASH, 1024, key_layout=U32, value_layout=U32, name="grow")) as m:
        m.update_batch(list(range(1024)), list(range(1024)))
        assert sorted(m.lookup_batch(chunk=1)) == [(k, k) for k in range(1024)]


def test_lookup_and_delete_batch_drains_the_map():
    with Map.create(MapSpec(T.BPF_MAP_TYPE_HASH, 256, key_layout=U32, value_layout=U32, name="drain")) as m:
        m.update_batch(list(range(100)), list(range(100)))
        assert sorted(m.lookup_and_delete_batch(chunk=16)) == [(k, k) for k in range(100)]
        assert list(m.keys()) == []


def test_batch_update_accepts_packed_buffers():
    with Map.create(MapSpec(T.BPF_MAP_TYPE_HASH, 16, key_layout=U32, value_layout=U32, name="packed")) as m:
        assert m.update_batch(b"".join(U32.pack(k) for k in range(4)), bytes(16)) == 4
        assert dict(m.items()) == dict.fromkeys(range(4), 0)


def test_array_batch_lookup_and_update_work_and_delete_batch_is_not_supported():
    with Map.create(MapSpec(T.BPF_MAP_TYPE_ARRAY, 8, key_layout=U32, value_layout=U32, name="arrb")) as m:
        m.update_batch([1, 2], [10, 20])
        assert dict(m.lookup_batch(chunk=3)) == {0: 0, 1: 10, 2: 20, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0}
        with pytest.raises(NotSupportedError, match="BPF_MAP_DELETE_BATCH on array"):
            m.delete_batch([1])


def test_batch_delete_stops_at_a_missing_key_and_says_how_many_were_done():
    with Map.create(MapSpec(T.BPF_MAP_TYPE_HASH, 16, key_layout=U32, value_layout=U32, name="partial")) as m:
        m.update_batch([1, 2, 3], [1, 2, 3])
        with pytest.raises(BatchError) as info:
            m.delete_batch([1, 2, 99, 3])
        assert (info.value.done, info.value.total, info.value.errno) == (2, 4, errno.ENOENT)
        assert list(m.keys()) == [3]


def test_a_pinned_map_of_another_capacity_is_adopted_with_its_own_max_entries_when_asked(bpffs):
    spec = MapSpec(MapType.BPF_MAP_TYPE_HASH, 8, key_size=4, value_size=4, name="resized")
    with Map.create(spec) as m:
        m.pin(bpffs / "resized")
    bigger = spec.replace(max_entries=16)
    with Map.from_pinned(bpffs / "resized", expect=bigger, any_max_entries=True) as again:
        assert again.spec.max_entries == 8
    with pytest.raises(MapIncompatibleError):
        Map.from_pinned(bpffs / "resized", expect=bigger.replace(value_size=8), any_max_entries=True)
    (bpffs / "resized").unlink()
