"""BPF maps: specs (frozen values), live maps (own an fd), typed keys and values, batches, pins.

Public API::

    from pybpfguard.bpf.maps import Map, MapSpec, MapType, MapFlags, BPF_ANY, BPF_NOEXIST, BPF_EXIST
    from pybpfguard.bpf.layout import Layout

    INODE_KEY = Layout("inode_key", [("ino", "u64"), ("dev", "u32"), ("pad", "u32")])
    spec = MapSpec(MapType.BPF_MAP_TYPE_HASH, 65536, key_layout=INODE_KEY, value_size=1, name="deny_inode")
    with Map.create(spec) as m:
        m.update_elem(INODE_KEY.value(ino=5, dev=271581186), b"\\x01")

Rule-set swaps: an ARRAY_OF_MAPS/HASH_OF_MAPS outer map holds inner maps; ``outer.update_elem(0, new_inner)``
replaces the inner map atomically for every program that looks it up afterwards, so the agent fills a
complete new rule set first and then swaps it in with one update. Lookups on the outer map return the inner
map's *id* (``Map.lookup_map`` opens it).
"""

from pybpfguard.bpf.maps.errors import BatchError, IterationAbortedError, MapIncompatibleError, MapSpecError
from pybpfguard.bpf.maps.info import MapInfo
from pybpfguard.bpf.maps.map import Map
from pybpfguard.bpf.maps.spec import MapSpec
from pybpfguard.bpf.maps.types import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_NOEXIST,
    MapFlags,
    MapType,
    UpdateFlags,
)

__all__ = [
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_F_LOCK",
    "BPF_NOEXIST",
    "BatchError",
    "IterationAbortedError",
    "Map",
    "MapFlags",
    "MapIncompatibleError",
    "MapInfo",
    "MapSpec",
    "MapSpecError",
    "MapType",
    "UpdateFlags",
]
