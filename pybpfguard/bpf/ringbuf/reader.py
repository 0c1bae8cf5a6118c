"""``RingReader``: a kernel ``BPF_MAP_TYPE_RINGBUF`` mapped into this process and read with :class:`Ring`.

mmap layout (kernel/bpf/ringbuf.c ``ringbuf_map_mmap_kern``): offset 0, one page, read-write: the consumer
page; offset ``PAGE_SIZE``, ``PAGE_SIZE + 2 * max_entries`` bytes, read-only: the producer page followed by
the data area mapped twice. The kernel refuses a writable mapping of anything past the consumer page.
Minimum kernel: 5.8 (BPF_MAP_TYPE_RINGBUF).
"""

from __future__ import annotations

import mmap
import os
import select
from typing import Any, Protocol

from pybpfguard.bpf import _sys
from pybpfguard.bpf._sys.maps import map_get_info
from pybpfguard.bpf.errors import WrongTypeError, from_errno
from pybpfguard.bpf.ringbuf.errors import RingBufferError
from pybpfguard.bpf.ringbuf.ring import RecordCallback, Ring

BPF_MAP_TYPE_RINGBUF = 27  # include/uapi/linux/bpf.h: enum bpf_map_type
PAGE_SIZE = mmap.PAGESIZE


class HasMapFd(Protocol):
    """A map object (``pybpfguard.bpf.maps.Map``) exposing its owned fd as ``.fd``."""

    @property
    def fd(self) -> _sys.Fd: ...


def _as_fd(ring_map: _sys.Fd | HasMapFd) -> _sys.Fd:
    if isinstance(ring_map, _sys.Fd):
        return ring_map
    fd = getattr(ring_map, "fd", None)
    if isinstance(fd, _sys.Fd):
        return fd
    raise WrongTypeError(f"RingReader needs an Fd or a map object with an .fd Fd, got {type(ring_map).__name__}")


class RingReader(Ring):
    """Reads one kernel ring buffer map through shared mappings; see :class:`Ring` for the algorithm.

    *ring_map* is **borrowed**: an :class:`~pybpfguard.bpf._sys.Fd` or a map object with an ``.fd``; the
    caller keeps it open while the reader is used and closes it after. (:meth:`open_pinned` instead
    **takes** the fd it opens and closes it with the reader.) The mappings hold their own reference to the
    map, so the ring memory stays valid even if the map fd closes first; waiting needs the fd open.

    Raises :class:`RingBufferError` if the map is not a ``BPF_MAP_TYPE_RINGBUF``, and a
    :class:`~pybpfguard.bpf.errors.SyscallError` (cmd ``"mmap"``) if the kernel refuses a mapping.

    A context manager: ``close()`` unmaps the ring and closes the reader's epoll fd. A record memoryview
    kept past its batch pins the data mapping until that view is freed (it is not an error, but its bytes
    may already be overwritten by the producer).
    """

    def __init__(self, ring_map: _sys.Fd | HasMapFd) -> None:
        self._map_fd = _as_fd(ring_map)
        self._owned_fd: _sys.Fd | None = None
        self._epoll: select.epoll | None = None
        self._maps: list[mmap.mmap] = []
        info = map_get_info(self._map_fd, "ring buffer reader")  # BPF_OBJ_GET_INFO_BY_FD
        if info.type != BPF_MAP_TYPE_RINGBUF:
            raise RingBufferError(
                f"fd {self._map_fd.raw} ({self._map_fd.what or 'map'}) has map_type {info.type}, "
                f"not BPF_MAP_TYPE_RINGBUF ({BPF_MAP_TYPE_RINGBUF})"
            )
        size_bytes = int(info.max_entries)  # for a ring buffer: the data area in bytes
        self.map_id = int(info.id)
        consumer = self._mmap(PAGE_SIZE, mmap.PROT_READ | mmap.PROT_WRITE, 0)
        producer = self._mmap(PAGE_SIZE + 2 * size_bytes, mmap.PROT_READ, PAGE_SIZE)
        view = memoryview(producer)
        super().__init__(consumer, view[:PAGE_SIZE], view[PAGE_SIZE:], size_bytes)
        view.release()

    @classmethod
    def open_pinned(cls, path: str | os.PathLike[str]) -> RingReader:
        """Open the ring pinned at *path* (on a bpffs) and read on from its stored consumer position.

        The reader owns the fd it opens and closes it in :meth:`close`.
        """
        fd = _sys.obj_get(path)
        try:
            reader = cls(fd)
        except BaseException:
            fd.close()
            raise
        reader._owned_fd = fd
        return reader

    def _mmap(self, length: int, prot: int, offset: int) -> mmap.mmap:
        try:
            area = mmap.mmap(self._map_fd.raw, length, mmap.MAP_SHARED, prot, offset=offset)
        except OSError as err:
            self.close()
            what = "consumer page (read-write)" if offset == 0 else "producer page and data (read-only)"
            raise from_errno("mmap", err.errno or 0, detail=f"ring buffer {what}, {length} bytes") from err
        self._maps.append(area)
        return area

    def fileno(self) -> int:
        """The map fd: readable (EPOLLIN, level-triggered) while unconsumed data is in the ring. Register it
        with ``selectors`` or ``asyncio`` (``loop.add_reader(reader.fileno(), ...)``)."""
        return self._map_fd.raw

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the ring has unconsumed data or *timeout_s* seconds pass (``None``: no timeout,
        0: just check). Return True if data is there. A BUSY record at the head counts as data (the
        kernel reports bytes reserved), so a caller looping on ``wait``/``consume`` may see 0 records
        once while a producer is mid-write."""
        if self._epoll is None:
            self._epoll = select.epoll(1)
            self._epoll.register(self._map_fd.raw, select.EPOLLIN)
        return bool(self._epoll.poll(-1 if timeout_s is None else timeout_s, 1))

    def poll(self, callback: RecordCallback, timeout_s: float | None = None, limit: int | None = None) -> int:
        """:meth:`wait` up to *timeout_s* seconds, then :meth:`consume` (at most *limit* records); return
        the number of records handed to *callback* (0 on timeout)."""
        if not self.wait(timeout_s):
            return 0
        return self.consume(callback, limit)

    def close(self) -> None:
        """Unmap the ring, close the epoll fd and, for :meth:`open_pinned`, the map fd. Idempotent."""
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if hasattr(self, "_data"):  # absent when __init__ failed before the mappings were made
            self._release_views()
        maps, self._maps = self._maps, []
        for area in maps:
            try:
                area.close()
            except BufferError:
                # A record view outlived its batch: the mapping is unmapped when that view is freed.
                pass
        if self._owned_fd is not None:
            self._owned_fd.close()
            self._owned_fd = None

    def __enter__(self) -> RingReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
