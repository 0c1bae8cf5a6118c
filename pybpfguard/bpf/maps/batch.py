"""The four batch commands (Linux 5.6): BPF_MAP_{LOOKUP,LOOKUP_AND_DELETE,UPDATE,DELETE}_BATCH.

Kernel behaviour this follows (kernel/bpf/hashtab.c ``__htab_map_lookup_and_delete_batch``, syscall.c
``generic_map_*_batch``, ``bpf_map_do_batch``):
- lookup walks from an opaque position: ``in_batch`` NULL starts at the beginning, ``out_batch`` receives
  the position to pass next (a u32 bucket index for hash maps, a key for arrays: the token buffer is
  ``max(key_size, 4)`` bytes). The end is ENOENT, with ``count`` still telling how many came back.
- a hash bucket is returned whole or not at all: ENOSPC with ``count == 0`` means the bucket holds more
  than ``count`` elements; the batch is doubled and the same position retried.
- update/delete stop at the first failing element; ``count`` says how many were done (BatchError).
- types without the command answer ENOTSUPP (errno 524): NotSupportedError, no silent per-element fallback
  (hash types support all four; arrays lookup and update; see :meth:`Map.items` for a walk that works on
  every type).
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pybpfguard.bpf._sys import BpfCmd
from pybpfguard.bpf._sys.maps import map_batch
from pybpfguard.bpf.errors import ENOTSUPP, InvalidArgumentError, NotSupportedError, SyscallError
from pybpfguard.bpf.maps.errors import BatchError
from pybpfguard.bpf.maps.types import MAP_IN_MAP_TYPES

if TYPE_CHECKING:
    from pybpfguard.bpf.maps.map import Map

DEFAULT_CHUNK = 4096  # elements per lookup call; grown on ENOSPC
_UNSUPPORTED = (ENOTSUPP, errno.EOPNOTSUPP)


def _not_supported(m: Map, cmd: BpfCmd, err: SyscallError) -> NotSupportedError:
    return NotSupportedError(
        f"{cmd.name} on {m.spec.type.short} ({m.what})", "5.6", f"the kernel answered {err.strerror}"
    )


def lookup_batch(m: Map, *, chunk: int = 0, delete: bool = False) -> list[tuple[Any, Any]]:
    """Every (key, value) pair of *m*, decoded as :meth:`Map.lookup_elem` would; with *delete*, removed too.

    *chunk*: elements asked for per call (default min(max_entries, 4096)), doubled on ENOSPC.
    Raises NotSupportedError for map types without batch lookup, SyscallError otherwise.
    """
    kcodec, vcodec = m.key_codec, m.value_codec
    inner_ids = m.spec.type in MAP_IN_MAP_TYPES
    out: list[tuple[Any, Any]] = []
    for kraw, vraw, done in _walk(m, chunk=chunk, delete=delete):
        if inner_ids:
            got_values: list[Any] = [int.from_bytes(vraw[i : i + 4], "little") for i in range(0, done * 4, 4)]
        else:
            got_values = vcodec.decode_many(vraw, done)
        out.extend(zip(kcodec.decode_many(kraw, done), got_values, strict=True))
    return out


def lookup_batch_raw(m: Map, *, chunk: int = 0, delete: bool = False) -> tuple[bytes, bytes, int]:
    """Every element of *m* undecoded: (keys packed back to back, values packed likewise, count); with
    *delete*, removed too. For bulk work that would spend more on decoding than the kernel spends walking
    (emptying a 65,536-entry map: feed the keys to :func:`delete_batch`). Raises as :func:`lookup_batch`."""
    keys, values, total = bytearray(), bytearray(), 0
    for kraw, vraw, done in _walk(m, chunk=chunk, delete=delete):
        keys += kraw
        values += vraw
        total += done
    return bytes(keys), bytes(values), total


def _walk(m: Map, *, chunk: int, delete: bool) -> Iterator[tuple[bytes, bytes, int]]:
    """The batch lookup walk: per kernel call, (keys bytes, values bytes, count), each cut to count."""
    cmd = BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_BATCH if delete else BpfCmd.BPF_MAP_LOOKUP_BATCH
    ksize = m.key_codec.size
    vsize = m.value_codec.size
    count = max(1, chunk or min(m.spec.max_entries, DEFAULT_CHUNK))
    tokens = [ctypes.create_string_buffer(max(ksize, 4)) for _ in range(2)]
    in_batch: ctypes.Array[ctypes.c_char] | None = None
    while True:
        keys = ctypes.create_string_buffer(count * ksize)
        values = ctypes.create_string_buffer(count * vsize)
        out_batch = tokens[0] if in_batch is not tokens[0] else tokens[1]
        done, err = map_batch(
            cmd, m.fd, keys=keys, values=values, count=count, in_batch=in_batch, out_batch=out_batch, what=m.what
        )
        if err is not None and err.errno == errno.ENOSPC and done == 0:
            count *= 2  # one bucket is larger than the batch: retry the same position with room for it
            continue
        if err is not None and err.errno in _UNSUPPORTED:
            raise _not_supported(m, cmd, err) from err
        if err is not None and err.errno != errno.ENOENT:
            raise err
        yield keys.raw[: done * ksize], values.raw[: done * vsize], done
        if err is not None:  # ENOENT: the walk reached the end
            return
        in_batch = out_batch


def _buffer(codec: Any, items: Sequence[Any] | bytes | bytearray | memoryview, what: str) -> tuple[Any, int]:
    """A ctypes buffer of the encoded *items* and their count; packed bytes pass through as they are."""
    if isinstance(items, (bytes, bytearray, memoryview)):
        raw = bytes(items)
        if len(raw) % codec.size:
            raise InvalidArgumentError(f"{what}: packed buffer of {len(raw)} bytes is not a multiple of {codec.size}")
        n = len(raw) // codec.size
    else:
        raw = codec.encode_many(items)
        n = len(items)
    return (ctypes.c_char * max(len(raw), 1)).from_buffer_copy(raw or b"\0"), n


def update_batch(
    m: Map,
    keys: Sequence[Any] | bytes | bytearray | memoryview,
    values: Sequence[Any] | bytes | bytearray | memoryview,
    *,
    elem_flags: int = 0,
) -> int:
    """BPF_MAP_UPDATE_BATCH: write ``keys[i] -> values[i]`` in one call; return how many were written.

    *keys*/*values* are sequences of anything :meth:`Map.update_elem` takes, or packed buffers of
    ``n * key_size`` / ``n * value size`` bytes (per-CPU values: ``n * ncpus * round_up(value_size, 8)``).
    *elem_flags* may only be BPF_F_LOCK. Raises BatchError (with ``.done``) if the kernel stops part way,
    NotSupportedError for map types without it.
    """
    if m.spec.type in MAP_IN_MAP_TYPES:
        raise NotSupportedError(f"BPF_MAP_UPDATE_BATCH of a map of maps ({m.what})", reason="values are fds")
    kbuf, n = _buffer(m.key_codec, keys, f"{m.what} keys")
    vbuf, nv = _buffer(m.value_codec, values, f"{m.what} values")
    if n != nv:
        raise InvalidArgumentError(f"{m.what}: {n} keys but {nv} values")
    return _write_batch(m, BpfCmd.BPF_MAP_UPDATE_BATCH, kbuf, vbuf, n, elem_flags)


def delete_batch(m: Map, keys: Sequence[Any] | bytes | bytearray | memoryview) -> int:
    """BPF_MAP_DELETE_BATCH: delete *keys* in one call; return how many were deleted.

    A missing key stops the batch there: BatchError with ``.done`` and errno ENOENT.
    """
    kbuf, n = _buffer(m.key_codec, keys, f"{m.what} keys")
    return _write_batch(m, BpfCmd.BPF_MAP_DELETE_BATCH, kbuf, None, n, 0)


def _write_batch(m: Map, cmd: BpfCmd, kbuf: Any, vbuf: Any, n: int, elem_flags: int) -> int:
    if n == 0:
        return 0
    done, err = map_batch(cmd, m.fd, keys=kbuf, values=vbuf, count=n, elem_flags=elem_flags, what=m.what)
    if err is None:
        return done
    if err.errno in _UNSUPPORTED:
        raise _not_supported(m, cmd, err) from err
    raise BatchError(m.name, cmd.name, err.errno, done, n) from err
