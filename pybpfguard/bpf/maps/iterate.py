"""Key iteration with BPF_MAP_GET_NEXT_KEY that survives keys deleted under it.

The kernel's contract (kernel/bpf/hashtab.c ``htab_map_get_next_key``, lpm_trie.c ``trie_get_next_key``):
if the key passed in is no longer in the map, the answer is the *first* key again. A naive walk then
restarts: it yields keys twice, and if keys keep vanishing under it, it never ends. The order itself is
stable while keys exist (hash buckets are fixed at creation; a trie walks in a fixed order).

What this iterator does: it remembers the keys yielded so far (in order, and as a set). An answer that
was already yielded is either a key further along (re-inserted after a delete: skipped) or a restart,
which it recognises because the key it asked about is gone. On a restart it resumes after the most recent
yielded key that still exists (one BPF_MAP_LOOKUP_ELEM per vanished key), so deleting the key just yielded,
the usual "prune while walking" pattern, costs a few calls and never replays the map.

Semantics:
- every key yielded is distinct;
- a key present for the whole walk is yielded exactly once; a key inserted or deleted during the walk may
  or may not be yielded;
- if restarts happen *max_restarts* times in a row without a new key (keys deleted faster than the walk
  advances), IterationAbortedError is raised rather than looping forever.
Memory: each yielded key is held twice (list and set) until the walk ends.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

from pybpfguard.bpf._sys import Fd
from pybpfguard.bpf._sys.maps import ElemCall, map_get_next_key
from pybpfguard.bpf.errors import KeyNotFoundError
from pybpfguard.bpf.maps.errors import IterationAbortedError
from pybpfguard.bpf.maps.spec import MapSpec

Buf = ctypes.Array[ctypes.c_char]


class _Walker:
    """State of one walk over the map behind *fd* (borrowed)."""

    def __init__(self, fd: Fd, spec: MapSpec, value_bytes: int, what: str) -> None:
        self.call = ElemCall(fd, spec.key_size, value_bytes, what)
        self.size = spec.key_size

    def buf(self, key: bytes) -> Buf:
        return ctypes.create_string_buffer(key, self.size)

    def exists(self, key: bytes) -> bool:
        try:
            self.call.lookup(key)
        except KeyNotFoundError:
            return False
        return True


def iter_raw_keys(fd: Fd, spec: MapSpec, value_bytes: int, what: str, *, max_restarts: int = 64) -> Iterator[bytes]:
    """Yield each key of the map behind *fd* as raw bytes, per the module's semantics.

    *value_bytes* is the size of one looked-up value (per-CPU maps: all CPUs). Raises IterationAbortedError.
    """
    w = _Walker(fd, spec, value_bytes, what)
    out = ctypes.create_string_buffer(spec.key_size)
    history: list[bytes] = []
    seen: set[bytes] = set()
    cur: bytes | None = None  # None asks for the first key
    stalls = 0
    while True:
        if not map_get_next_key(fd, None if cur is None else w.buf(cur), out, what):
            return
        key = out.raw
        if key not in seen:
            seen.add(key)
            history.append(key)
            stalls = 0
            cur = key
            yield key
            continue
        if cur is None or w.exists(cur):
            cur = key  # a yielded key further along the order (deleted and re-inserted): step over it
            continue
        stalls += 1
        if stalls > max_restarts:
            raise IterationAbortedError(spec.name, len(seen), stalls)
        # The kernel restarted because cur vanished: resume after the newest yielded key still present.
        while history and not w.exists(history[-1]):
            history.pop()
        cur = history[-1] if history else None
