"""``RingPoller``: one epoll set waiting on several ring buffers (libbpf's ``ring_buffer__poll``)."""

from __future__ import annotations

import select
from typing import Any

from pybpfguard.bpf.ringbuf.errors import RingBufferError
from pybpfguard.bpf.ringbuf.reader import RingReader
from pybpfguard.bpf.ringbuf.ring import RecordCallback


class RingPoller:
    """Waits on several :class:`RingReader` s at once and drains the ready ones.

    Readers are **borrowed**: the caller closes them (after the poller, or after :meth:`remove`). The
    poller owns one epoll fd (level-triggered ``EPOLLIN`` on each map fd), closed by :meth:`close`; it is
    a context manager, and its own :meth:`fileno` can be nested in ``selectors`` or ``asyncio``.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._rings: dict[int, tuple[RingReader, RecordCallback]] = {}

    def add(self, reader: RingReader, callback: RecordCallback) -> None:
        """Deliver *reader*'s records to *callback* on each :meth:`poll`. Raises RingBufferError if the
        reader's map is already in this poller."""
        fd = reader.fileno()
        if fd in self._rings:
            raise RingBufferError(f"ring buffer map fd {fd} is already in this poller")
        self._epoll.register(fd, select.EPOLLIN)
        self._rings[fd] = (reader, callback)

    def remove(self, reader: RingReader) -> None:
        """Stop polling *reader* (KeyError if it was not added)."""
        fd = reader.fileno()
        del self._rings[fd]
        self._epoll.unregister(fd)

    def poll(self, timeout_s: float | None = None, limit: int | None = None) -> int:
        """Wait up to *timeout_s* seconds (``None``: no timeout, 0: just check) for any ring to have data,
        then consume each ready ring (at most *limit* records per ring); return the records delivered.
        Exceptions from a callback propagate after its ring has committed (see ``Ring.consume``); rings
        not yet drained stay readable for the next call."""
        events = self._epoll.poll(-1 if timeout_s is None else timeout_s)
        count = 0
        for fd, _mask in events:
            reader, callback = self._rings[fd]
            count += reader.consume(callback, limit)
        return count

    def consume(self, limit: int | None = None) -> int:
        """Drain every ring without waiting (at most *limit* records per ring); return the records delivered."""
        return sum(reader.consume(callback, limit) for reader, callback in self._rings.values())

    def fileno(self) -> int:
        """The epoll fd: readable when any of the rings is."""
        return self._epoll.fileno()

    def close(self) -> None:
        """Close the epoll fd (the readers stay open). Idempotent."""
        self._rings.clear()
        self._epoll.close()

    def __enter__(self) -> RingPoller:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
