"""Map: a live BPF map, owning its fd. Element operations are named after the bpf() command they issue.

Ownership: a Map owns exactly one :class:`~pybpfguard.bpf._sys.Fd` and closes it on ``close()`` or at the
end of a ``with`` block. The kernel frees the map once no fd, pin, program or outer map refers to it.
A program generator borrows ``map.fd`` (``Insn.ld_map_fd(R1, map.fd.raw)``) for the duration of the load.
"""

from __future__ import annotations

import ctypes
import mmap as _mmap
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from pybpfguard.bpf import _sys
from pybpfguard.bpf._sys import maps as _m
from pybpfguard.bpf.cpus import possible_cpus
from pybpfguard.bpf.errors import KeyNotFoundError, WrongTypeError
from pybpfguard.bpf.maps import batch as _batch
from pybpfguard.bpf.maps.encoding import ElemCodec, PerCpuCodec, round_up8
from pybpfguard.bpf.maps.errors import MapSpecError
from pybpfguard.bpf.maps.info import MapInfo, check_compatible
from pybpfguard.bpf.maps.iterate import iter_raw_keys
from pybpfguard.bpf.maps.spec import PAGE_SIZE, MapSpec
from pybpfguard.bpf.maps.types import MAP_IN_MAP_TYPES, MapFlags, MapType, UpdateFlags

_MISSING = object()


class Map:
    """A BPF map. Build with :meth:`create`, :meth:`from_pinned`, :meth:`from_id`; use as a context manager.

    Keys and values are encoded per :mod:`pybpfguard.bpf.maps.encoding` (bytes, ints, or layout values);
    lookups return layout values when the spec has layouts, else bytes. Per-CPU maps return one value per
    possible CPU. Map-of-maps values are inner map fds on update (pass a Map or Fd) and inner map *ids* on
    lookup (the kernel never hands out fds through a lookup); :meth:`lookup_map` opens the inner map.

    Failures are SyscallError subclasses whose hint names the map (``map 'deny_inode'``); a lookup miss
    is KeyNotFoundError (a KeyError with errno ENOENT).
    """

    __slots__ = ("_call", "_fd", "_key", "_keybuf_size", "_lock", "_value", "_what", "ncpus", "spec")

    def __init__(self, fd: _sys.Fd, spec: MapSpec) -> None:
        """Take ownership of *fd*, a map described by *spec* (not checked: use the class methods)."""
        self._fd = fd
        self.spec = spec
        self._what = f"map {spec.name!r}" if spec.name else "map (unnamed)"
        self._key = ElemCodec(spec.key_size, spec.key_layout, f"{self._what} key")
        value = ElemCodec(spec.value_size, spec.value_layout, f"{self._what} value")
        self.ncpus = possible_cpus() if spec.percpu else 1
        self._value: ElemCodec | PerCpuCodec = PerCpuCodec(value, self.ncpus) if spec.percpu else value
        self._keybuf_size = max(spec.key_size, 1)
        self._call = _m.ElemCall(fd, spec.key_size, self._value.size, self._what)
        self._lock = threading.Lock()  # guards _call's reused buffers

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def create(cls, spec: MapSpec) -> Map:
        """BPF_MAP_CREATE from *spec*. For a map of maps, a template inner map is created from
        ``spec.inner`` for the call and closed right after (the kernel keeps only its shape)."""
        inner: Map | None = cls.create(spec.inner) if spec.inner is not None else None
        try:
            fd = _sys.map_create(
                spec.type,
                spec.key_size,
                spec.value_size,
                spec.max_entries,
                spec.flags,
                map_name=spec.name,
                inner_map_fd=inner.fd if inner is not None else None,
                map_extra=spec.map_extra,
            )
        finally:
            if inner is not None:
                inner.close()
        return cls(fd, spec)

    @classmethod
    def from_fd(cls, fd: _sys.Fd, expect: MapSpec | None = None, *, where: str = "",
                any_max_entries: bool = False) -> Map:
        """Adopt *fd* (taken: closed on failure too). With *expect*, check compatibility (type, sizes,
        max_entries, flags) and use *expect* (its layouts, name) as the spec; raises MapIncompatibleError.
        With *any_max_entries* the map's own max_entries is accepted (and kept in the spec): a map pinned by
        an earlier run with another capacity keeps its entries instead of being refused."""
        try:
            info = MapInfo.from_kernel(_m.map_get_info(fd, where))
            if expect is None:
                return cls(fd, info.to_spec())
            if any_max_entries and info.max_entries != expect.max_entries:
                expect = expect.replace(max_entries=info.max_entries)
            check_compatible(info, expect, where or f"id {info.id}")
            return cls(fd, expect)
        except BaseException:
            fd.close()
            raise

    @classmethod
    def from_pinned(cls, path: str | os.PathLike[str], expect: MapSpec | None = None, *, file_flags: int = 0,
                    any_max_entries: bool = False) -> Map:
        """BPF_OBJ_GET the map pinned at *path* (a bpffs path). See :meth:`from_fd` for *expect* and
        *any_max_entries*."""
        return cls.from_fd(_sys.obj_get(path, file_flags), expect, where=os.fspath(path),
                           any_max_entries=any_max_entries)

    @classmethod
    def from_id(cls, map_id: int, expect: MapSpec | None = None) -> Map:
        """BPF_MAP_GET_FD_BY_ID (needs CAP_SYS_ADMIN). See :meth:`from_fd` for *expect*."""
        return cls.from_fd(_m.map_get_fd_by_id(map_id), expect, where=f"id {map_id}")

    # -- ownership ---------------------------------------------------------------------------------------
    @property
    def fd(self) -> _sys.Fd:
        """The owned Fd (borrow it; do not close it)."""
        return self._fd

    @property
    def name(self) -> str:
        return self.spec.name

    def close(self) -> None:
        """Close the fd (idempotent). Pinned maps, and maps used by loaded programs, live on."""
        self._fd.close()

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Map({self.spec.type.name}, {self._what}, fd={self._fd.raw if not self._fd.closed else 'closed'})"

    def pin(self, path: str | os.PathLike[str]) -> None:
        """BPF_OBJ_PIN at *path* on a bpffs: the map outlives this process until the pin is unlinked."""
        _sys.obj_pin(self._fd, path)

    def info(self) -> MapInfo:
        """The kernel's view (id, name, type, sizes, flags) via BPF_OBJ_GET_INFO_BY_FD."""
        return MapInfo.from_kernel(_m.map_get_info(self._fd, self._what))

    # -- encoding ----------------------------------------------------------------------------------------
    def _keybytes(self, key: Any) -> bytes | None:
        if not self.spec.key_size:
            if key is not None:
                raise MapSpecError(self.name, "key", f"{self.spec.type.short} has no keys; pass None")
            return None
        return self._key.encode(key)

    def _valuebytes(self, value: Any) -> bytes:
        if self.spec.type in MAP_IN_MAP_TYPES:
            value = _inner_fd(value)
        return self._value.encode(value)

    def _decode(self, raw: bytes) -> Any:
        if self.spec.type in MAP_IN_MAP_TYPES:
            return int.from_bytes(raw, "little")  # the inner map id
        return self._value.decode(raw)

    # -- element commands --------------------------------------------------------------------------------
    def lookup_elem(self, key: Any, flags: int = 0) -> Any:
        """BPF_MAP_LOOKUP_ELEM: the value for *key*; KeyNotFoundError if absent."""
        raw_key = self._keybytes(key)
        with self._lock:
            raw = self._call.lookup(raw_key, flags)
        return self._decode(raw)

    def get(self, key: Any, default: Any = None) -> Any:
        """Like :meth:`lookup_elem`, returning *default* when the key is absent."""
        try:
            return self.lookup_elem(key)
        except KeyNotFoundError:
            return default

    def update_elem(self, key: Any, value: Any, flags: int = UpdateFlags.BPF_ANY) -> None:
        """BPF_MAP_UPDATE_ELEM with *flags* BPF_ANY, BPF_NOEXIST (EEXIST if present), BPF_EXIST (ENOENT if
        absent), optionally | BPF_F_LOCK. A full hash map raises NoSpaceError (E2BIG); a frozen map EPERM."""
        raw_key, raw_value = self._keybytes(key), self._valuebytes(value)
        with self._lock:
            self._call.update(raw_key, raw_value, flags)

    def delete_elem(self, key: Any) -> None:
        """BPF_MAP_DELETE_ELEM; KeyNotFoundError if absent (arrays refuse with EINVAL)."""
        raw_key = self._key.encode(key)
        with self._lock:
            self._call.delete(raw_key)

    def lookup_and_delete_elem(self, key: Any, flags: int = 0) -> Any:
        """BPF_MAP_LOOKUP_AND_DELETE_ELEM: remove *key* and return its value (hash types, Linux 5.14)."""
        raw_key = self._keybytes(key)
        with self._lock:
            raw = self._call.lookup_and_delete(raw_key, flags)
        return self._decode(raw)

    def get_next_key(self, key: Any = None) -> Any:
        """BPF_MAP_GET_NEXT_KEY: the key after *key* (the first key for None), or None at the end.

        If *key* is not in the map the kernel answers with the first key (hash, LRU, LPM trie): a caller
        walking by hand restarts silently. :meth:`keys` detects and handles that.
        """
        out = ctypes.create_string_buffer(self._keybuf_size)
        raw = self._keybytes(key) if key is not None else None
        cur = ctypes.create_string_buffer(raw, len(raw)) if raw is not None else None
        if not _m.map_get_next_key(self._fd, cur, out, self._what):
            return None
        return self._key.decode(out.raw)

    def push_elem(self, value: Any) -> None:
        """Add *value* to a BLOOM_FILTER (BPF_MAP_UPDATE_ELEM with no key; like bpf_map_push_elem)."""
        raw_value = self._valuebytes(value)
        with self._lock:
            self._call.update(None, raw_value, 0)

    def peek_elem(self, value: Any) -> bool:
        """Whether a BLOOM_FILTER may contain *value* (BPF_MAP_LOOKUP_ELEM with no key; false positives
        possible, false negatives not)."""
        raw_value = self._valuebytes(value)
        try:
            with self._lock:
                self._call.peek(raw_value)
        except KeyNotFoundError:
            return False
        return True

    def freeze(self) -> None:
        """BPF_MAP_FREEZE: later update/delete through bpf() fail with EPERM (Linux 5.2)."""
        _m.map_freeze(self._fd, self._what)

    # -- iteration ---------------------------------------------------------------------------------------
    def keys(self, *, max_restarts: int = 64) -> Iterator[Any]:
        """Iterate over the keys; safe against concurrent deletes. See :func:`iterate.iter_raw_keys`."""
        decode = self._key.decode
        for raw in iter_raw_keys(self._fd, self.spec, self._value.size, self._what, max_restarts=max_restarts):
            yield decode(raw)

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def items(self) -> Iterator[tuple[Any, Any]]:
        """(key, value) pairs; a key deleted between its discovery and its lookup is left out, consistent
        with the iteration contract (keys deleted during the walk may or may not appear)."""
        for key in self.keys():
            value = self.get(key, _MISSING)
            if value is not _MISSING:
                yield key, value

    # -- map of maps -------------------------------------------------------------------------------------
    def lookup_map(self, key: Any) -> Map:
        """Open the inner map stored at *key* of a map of maps (by the id a lookup returns)."""
        return Map.from_id(self.lookup_elem(key), self.spec.inner)

    # -- mmap --------------------------------------------------------------------------------------------
    def mmap(self, *, writable: bool = True) -> _mmap.mmap:
        """Map the value area of a BPF_F_MMAPABLE ARRAY; element *i* is at ``i * round_up(value_size, 8)``.

        The mapping is shared with programs and lookups and keeps the map alive until closed (the caller
        owns it: ``with m.mmap() as mem``). A frozen map refuses a writable mapping (PermissionError).
        """
        if self.spec.type != MapType.BPF_MAP_TYPE_ARRAY or not self.spec.flags & MapFlags.BPF_F_MMAPABLE:
            raise MapSpecError(self.name, "flags", "only an ARRAY created with BPF_F_MMAPABLE can be mmap'ed")
        size = round_up8(self.spec.value_size) * self.spec.max_entries
        return _m.map_mmap(self._fd, -(-size // PAGE_SIZE) * PAGE_SIZE, writable=writable)

    # -- batches (see batch.py) ----------------------------------------------------------------------------
    def lookup_batch(self, *, chunk: int = 0) -> list[tuple[Any, Any]]:
        """All (key, value) pairs through BPF_MAP_LOOKUP_BATCH (Linux 5.6); see :func:`batch.lookup_batch`."""
        return _batch.lookup_batch(self, chunk=chunk)

    def lookup_batch_raw(self, *, chunk: int = 0) -> tuple[bytes, bytes, int]:
        """All elements undecoded: (packed keys, packed values, count); see :func:`batch.lookup_batch_raw`."""
        return _batch.lookup_batch_raw(self, chunk=chunk)

    def lookup_and_delete_batch(self, *, chunk: int = 0) -> list[tuple[Any, Any]]:
        """Drain the map through BPF_MAP_LOOKUP_AND_DELETE_BATCH; return what was removed."""
        return _batch.lookup_batch(self, chunk=chunk, delete=True)

    def update_batch(self, keys: Sequence[Any] | bytes, values: Sequence[Any] | bytes, elem_flags: int = 0) -> int:
        """BPF_MAP_UPDATE_BATCH; see :func:`batch.update_batch`. Returns the number of elements written."""
        return _batch.update_batch(self, keys, values, elem_flags=elem_flags)

    def delete_batch(self, keys: Sequence[Any] | bytes) -> int:
        """BPF_MAP_DELETE_BATCH; see :func:`batch.delete_batch`. Returns the number of elements deleted."""
        return _batch.delete_batch(self, keys)

    # for batch.py: codecs and name, without widening the public surface
    @property
    def key_codec(self) -> ElemCodec:
        return self._key

    @property
    def value_codec(self) -> ElemCodec | PerCpuCodec:
        return self._value

    @property
    def what(self) -> str:
        """How errors name this map (``map 'deny_inode'``)."""
        return self._what


def _inner_fd(value: Any) -> int:
    """The fd number of an inner map for a map-of-maps update (borrowed for the call)."""
    if isinstance(value, Map):
        return value.fd.raw
    if isinstance(value, _sys.Fd):
        return value.raw
    raise WrongTypeError(f"a map-of-maps value is an inner Map or Fd, not {type(value).__name__}")
