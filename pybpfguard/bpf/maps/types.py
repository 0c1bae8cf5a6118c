"""Map type and flag constants, with their uapi names.

Source: include/uapi/linux/bpf.h (Linux 6.18): ``enum bpf_map_type``, the map_flags enum (``BPF_F_NO_PREALLOC``
...), and the ``BPF_ANY``/``BPF_NOEXIST``/``BPF_EXIST``/``BPF_F_LOCK`` flags of BPF_MAP_UPDATE_ELEM.
"""

from __future__ import annotations

import enum


class MapType(enum.IntEnum):
    """include/uapi/linux/bpf.h: enum bpf_map_type."""

    BPF_MAP_TYPE_UNSPEC = 0
    BPF_MAP_TYPE_HASH = 1
    BPF_MAP_TYPE_ARRAY = 2
    BPF_MAP_TYPE_PROG_ARRAY = 3
    BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4
    BPF_MAP_TYPE_PERCPU_HASH = 5
    BPF_MAP_TYPE_PERCPU_ARRAY = 6
    BPF_MAP_TYPE_STACK_TRACE = 7
    BPF_MAP_TYPE_CGROUP_ARRAY = 8
    BPF_MAP_TYPE_LRU_HASH = 9
    BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
    BPF_MAP_TYPE_LPM_TRIE = 11
    BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
    BPF_MAP_TYPE_HASH_OF_MAPS = 13
    BPF_MAP_TYPE_DEVMAP = 14
    BPF_MAP_TYPE_SOCKMAP = 15
    BPF_MAP_TYPE_CPUMAP = 16
    BPF_MAP_TYPE_XSKMAP = 17
    BPF_MAP_TYPE_SOCKHASH = 18
    BPF_MAP_TYPE_CGROUP_STORAGE = 19
    BPF_MAP_TYPE_REUSEPORT_SOCKARRAY = 20
    BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE = 21
    BPF_MAP_TYPE_QUEUE = 22
    BPF_MAP_TYPE_STACK = 23
    BPF_MAP_TYPE_SK_STORAGE = 24
    BPF_MAP_TYPE_DEVMAP_HASH = 25
    BPF_MAP_TYPE_STRUCT_OPS = 26
    BPF_MAP_TYPE_RINGBUF = 27
    BPF_MAP_TYPE_INODE_STORAGE = 28
    BPF_MAP_TYPE_TASK_STORAGE = 29
    BPF_MAP_TYPE_BLOOM_FILTER = 30
    BPF_MAP_TYPE_USER_RINGBUF = 31
    BPF_MAP_TYPE_CGRP_STORAGE = 32
    BPF_MAP_TYPE_ARENA = 33

    @property
    def short(self) -> str:
        """The lower-case name bpftool prints (``"lru_percpu_hash"``)."""
        return self.name.removeprefix("BPF_MAP_TYPE_").lower()


PERCPU_TYPES = frozenset(
    {
        MapType.BPF_MAP_TYPE_PERCPU_HASH,
        MapType.BPF_MAP_TYPE_PERCPU_ARRAY,
        MapType.BPF_MAP_TYPE_LRU_PERCPU_HASH,
        MapType.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
    }
)
MAP_IN_MAP_TYPES = frozenset({MapType.BPF_MAP_TYPE_ARRAY_OF_MAPS, MapType.BPF_MAP_TYPE_HASH_OF_MAPS})
ARRAY_TYPES = frozenset(
    {MapType.BPF_MAP_TYPE_ARRAY, MapType.BPF_MAP_TYPE_PERCPU_ARRAY, MapType.BPF_MAP_TYPE_ARRAY_OF_MAPS}
)
KEYLESS_TYPES = frozenset(
    {
        MapType.BPF_MAP_TYPE_RINGBUF,
        MapType.BPF_MAP_TYPE_USER_RINGBUF,
        MapType.BPF_MAP_TYPE_BLOOM_FILTER,
        MapType.BPF_MAP_TYPE_QUEUE,
        MapType.BPF_MAP_TYPE_STACK,
    }
)


class MapFlags(enum.IntFlag):
    """include/uapi/linux/bpf.h: the ``map_flags`` of BPF_MAP_CREATE (anonymous enum, ``BPF_F_*``)."""

    BPF_F_NO_PREALLOC = 1 << 0
    BPF_F_NO_COMMON_LRU = 1 << 1
    BPF_F_NUMA_NODE = 1 << 2
    BPF_F_RDONLY = 1 << 3
    BPF_F_WRONLY = 1 << 4
    BPF_F_STACK_BUILD_ID = 1 << 5
    BPF_F_ZERO_SEED = 1 << 6
    BPF_F_RDONLY_PROG = 1 << 7
    BPF_F_WRONLY_PROG = 1 << 8
    BPF_F_CLONE = 1 << 9
    BPF_F_MMAPABLE = 1 << 10
    BPF_F_PRESERVE_ELEMS = 1 << 11
    BPF_F_INNER_MAP = 1 << 12
    BPF_F_LINK = 1 << 13
    BPF_F_PATH_FD = 1 << 14
    BPF_F_VTYPE_BTF_OBJ_FD = 1 << 15
    BPF_F_TOKEN_FD = 1 << 16
    BPF_F_SEGV_ON_FAULT = 1 << 17
    BPF_F_NO_USER_CONV = 1 << 18


class UpdateFlags(enum.IntFlag):
    """include/uapi/linux/bpf.h: ``flags`` of BPF_MAP_UPDATE_ELEM (and ``elem_flags`` of the batch commands,
    which accept only BPF_F_LOCK)."""

    BPF_ANY = 0  # create a new element or update an existing one
    BPF_NOEXIST = 1  # create only: EEXIST if the key is present
    BPF_EXIST = 2  # update only: ENOENT if the key is absent
    BPF_F_LOCK = 4  # take the value's bpf_spin_lock (needs BTF with a struct bpf_spin_lock)


BPF_ANY = UpdateFlags.BPF_ANY
BPF_NOEXIST = UpdateFlags.BPF_NOEXIST
BPF_EXIST = UpdateFlags.BPF_EXIST
BPF_F_LOCK = UpdateFlags.BPF_F_LOCK
