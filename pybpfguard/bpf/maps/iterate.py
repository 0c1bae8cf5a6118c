"""Key iteration with BPF_MAP_GET_NEXT_KEY that survives keys deleted under it.

The kernel's contract (kernel/bpf/hashtab.c ``htab_map_get_next_key``, lpm_trie.c ``trie_get_next_key``):
if the key passed in is no longer in the map, the answer is the *first* key again. A naive walk then
restarts: it yields keys twice, and if the current key is deleted on every step it never ends.

Semantics here:
- every key yielded is distinct (a set of seen keys drops the repeats a restart produces);
- a key present for the whole walk is yielded exactly once; a key inserted or deleted during the walk
  may or may not be yielded;
- a restart (the kernel answering with a key already seen) is counted; after *max_restarts* restarts, or
  more calls than restarts allow, IterationAbortedError is raised rather than looping forever.
Array maps never restart (their keys cannot vanish). Memory: the seen set holds each key once.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

from pybpfguard.bpf._sys import Fd
from pybpfguard.bpf._sys.maps import map_get_next_key
from pybpfguard.bpf.maps.errors import IterationAbortedError
from pybpfguard.bpf.maps.spec import MapSpec


def iter_raw_keys(fd: Fd, spec: MapSpec, what: str, *, max_restarts: int = 64) -> Iterator[bytes]:
    """Yield each key of the map behind *fd* (borrowed) as raw bytes, per the module's semantics."""
    size = spec.key_size
    bufs = (ctypes.create_string_buffer(size), ctypes.create_string_buffer(size))
    cur: ctypes.Array[ctypes.c_char] | None = None  # None asks for the first key
    seen: set[bytes] = set()
    restarts = 0
    replaying = False  # walking keys already seen after a restart
    # Each restart replays at most every key seen so far, plus the keys yet to come: bounds the calls.
    budget = (max_restarts + 2) * (spec.max_entries + 1)
    calls = 0
    while True:
        nxt = bufs[0] if cur is not bufs[0] else bufs[1]
        calls += 1
        if calls > budget or not map_get_next_key(fd, cur, nxt, what):
            if calls > budget:
                raise IterationAbortedError(spec.name, len(seen), restarts)
            return
        key = nxt.raw
        if key in seen:
            if not replaying and cur is not None:
                restarts += 1
                if restarts > max_restarts:
                    raise IterationAbortedError(spec.name, len(seen), restarts)
            replaying = True
        else:
            replaying = False
            seen.add(key)
            yield key
        cur = nxt
