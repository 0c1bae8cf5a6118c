"""MapSpec: what a map should be, as a frozen value. No kernel access; :class:`Map` creates from it.

The checks here are the kernel's own rules for BPF_MAP_CREATE (kernel/bpf/*.c ``*_map_alloc_check``),
made early so the error names the map and the field instead of a bare EINVAL.
"""

from __future__ import annotations

import dataclasses
import mmap
import re
from dataclasses import dataclass

from pybpfguard.bpf.layout import Layout, Scalar
from pybpfguard.bpf.maps.errors import MapSpecError
from pybpfguard.bpf.maps.types import ARRAY_TYPES, KEYLESS_TYPES, MAP_IN_MAP_TYPES, PERCPU_TYPES, MapFlags, MapType

ElemLayout = Layout | Scalar
_NAME = re.compile(r"^[A-Za-z0-9_.]{0,15}$")  # kernel/bpf/syscall.c bpf_obj_name_cpy: alnum, '_', '.'
PAGE_SIZE = mmap.PAGESIZE
_NO_FLAGS = MapFlags(0)
BLOOM_MAX_HASHES = 15  # kernel/bpf/bloom_filter.c: nr_hash_funcs is map_extra & 0xf


@dataclass(frozen=True, slots=True)
class MapSpec:
    """A map to create (or to expect when opening a pinned one).

    - ``type``: MapType. ``max_entries``: elements (for RINGBUF: the data size in bytes, a power of 2 and a
      multiple of the page size).
    - ``key_size``/``value_size`` in bytes, or taken from ``key_layout``/``value_layout`` (a Layout or
      Scalar), which also type the keys and values the Map accepts and returns. Giving both must agree.
    - ``flags``: MapFlags (LPM_TRIE requires BPF_F_NO_PREALLOC; BPF_F_MMAPABLE for mmap-able arrays).
    - ``name``: at most 15 bytes of ``[A-Za-z0-9_.]`` (the kernel's limit; never truncated here).
    - ``inner``: for ARRAY_OF_MAPS/HASH_OF_MAPS, the spec every inner map must match; value_size is 4
      (inner map fds on update, inner map ids on lookup).
    - ``map_extra``: BLOOM_FILTER's number of hash functions (0 means the kernel default, 5; at most 15).

    Raises MapSpecError naming the map and the field.
    """

    type: MapType
    max_entries: int
    key_size: int = 0
    value_size: int = 0
    flags: MapFlags = _NO_FLAGS
    name: str = ""
    key_layout: ElemLayout | None = None
    value_layout: ElemLayout | None = None
    inner: MapSpec | None = None
    map_extra: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "type", MapType(self.type))
        set_(self, "flags", MapFlags(self.flags))
        if not _NAME.match(self.name):
            self._fail("name", f"{self.name!r} must be at most 15 bytes of [A-Za-z0-9_.]")
        for role in ("key", "value"):
            layout = getattr(self, f"{role}_layout")
            size = getattr(self, f"{role}_size")
            if layout is not None:
                if size and size != layout.size:
                    self._fail(f"{role}_size", f"{size} disagrees with {role}_layout {layout.name} ({layout.size})")
                set_(self, f"{role}_size", layout.size)
        if self.type in MAP_IN_MAP_TYPES and not self.value_size:
            set_(self, "value_size", 4)
        self._check()

    def _fail(self, field: str, reason: str) -> None:
        raise MapSpecError(self.name, field, reason)

    def _check(self) -> None:
        t = self.type
        if self.max_entries <= 0:
            self._fail("max_entries", f"{self.max_entries} must be positive")
        if t == MapType.BPF_MAP_TYPE_RINGBUF:
            if self.key_size or self.value_size:
                self._fail("key_size", "a ring buffer has key_size 0 and value_size 0")
            size = self.max_entries
            if size & (size - 1) or size % PAGE_SIZE:
                self._fail("max_entries", f"ring size {size} must be a power of 2 and a multiple of {PAGE_SIZE}")
        elif t in KEYLESS_TYPES:
            if self.key_size:
                self._fail("key_size", f"{t.short} has no key: key_size must be 0")
        elif self.key_size <= 0:
            self._fail("key_size", "must be positive")
        if t != MapType.BPF_MAP_TYPE_RINGBUF and self.value_size <= 0:
            self._fail("value_size", "must be positive")
        if t in ARRAY_TYPES and self.key_size != 4:
            self._fail("key_size", f"an array's key is a u32 index (4 bytes), not {self.key_size}")
        if t == MapType.BPF_MAP_TYPE_LPM_TRIE:
            if not self.flags & MapFlags.BPF_F_NO_PREALLOC:
                self._fail("flags", "LPM_TRIE requires BPF_F_NO_PREALLOC")
            if self.key_size <= 4:
                self._fail("key_size", "an LPM key is u32 prefixlen followed by at least 1 data byte")
        if t in MAP_IN_MAP_TYPES:
            if self.inner is None:
                self._fail("inner", f"{t.short} needs an inner map spec")
            if self.value_size != 4:
                self._fail("value_size", "a map-of-maps value is a u32 map fd/id (4 bytes)")
        elif self.inner is not None:
            self._fail("inner", f"only map-of-maps types take an inner spec, not {t.short}")
        if t == MapType.BPF_MAP_TYPE_BLOOM_FILTER:
            if not 0 <= self.map_extra <= BLOOM_MAX_HASHES:
                self._fail("map_extra", f"{self.map_extra} hash functions; the kernel takes 0..{BLOOM_MAX_HASHES}")
        elif self.map_extra and t != MapType.BPF_MAP_TYPE_ARENA:
            self._fail("map_extra", f"{t.short} takes no map_extra")

    @property
    def percpu(self) -> bool:
        """True for per-CPU types, whose values hold one 8-byte-aligned slot per possible CPU."""
        return self.type in PERCPU_TYPES

    def replace(self, **changes: object) -> MapSpec:
        """A copy with *changes* applied (and checked again). A new layout brings its own size."""
        for role in ("key", "value"):
            if f"{role}_layout" in changes and f"{role}_size" not in changes:
                changes[f"{role}_size"] = 0
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
