"""One sink lifecycle for every output: a format makes bytes, a transport delivers them from a writer thread.

A sink is a :class:`Format` (event Struct -> bytes: JSON today, CEF or OCSF next) times a
:class:`Transport` (bytes -> an output: an fd, journald's socket, syslog next), run by :class:`QueuedSink`.
The caller (the event loop, or a fanotify responder that must answer the kernel quickly) only frames the
event into one buffer under a short lock; it never waits on the output. The writer thread takes
the whole buffer and hands it to the transport when ``wake_bytes`` have accumulated or
``flush_interval_s`` (100 ms) has passed, and on :meth:`QueuedSink.flush`/:meth:`QueuedSink.close`
(registered with ``atexit``). Past ``max_backlog_bytes`` accepted but not yet delivered, or once the
transport says it is ``stopped``, events are dropped and counted in ``dropped_events``: never a hang.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from typing import Protocol

import msgspec


class Format(Protocol):
    """Event Struct -> bytes. Need not be thread-safe: a sink makes one per calling path."""

    def encode(self, event: msgspec.Struct) -> bytes:
        """One event, unframed (a journald ``MESSAGE``, a syslog ``MSG``)."""
        ...

    def append(self, event: msgspec.Struct, out: bytearray) -> None:
        """Append one event and its ``\\n`` to *out*."""
        ...

    def lines(self, events: list[msgspec.Struct]) -> bytes:
        """Every event as one line each (b"" for none)."""
        ...


class Transport(Protocol):
    """Frames formatted events into units and delivers them; :meth:`deliver` and :meth:`close` run on the
    writer thread only. Queued units are one ``bytearray`` and the end offset of each unit in it."""

    name: str  # the writer thread is ``pybpfguard-<name>``
    stopped: bool  # set by deliver() once the output is gone for good: later events are dropped at once

    def framer(self, fmt: Format) -> Callable[[msgspec.Struct, bytearray], None]:
        """The function that appends one event, as one unit, to a buffer."""
        ...

    def frame_many(self, fmt: Format, events: list[msgspec.Struct]) -> tuple[bytes | bytearray, list[int]]:
        """Several events as units: their bytes and each unit's end offset (one unit an event, or one for
        all when the output is a stream)."""
        ...

    def deliver(self, data: bytearray, ends: list[int], closing: Callable[[], bool]) -> int:
        """Send the units of *data* (``data[ends[i-1]:ends[i]]``) in order; wait on a slow output only
        while ``closing()`` is False. Returns the number of events lost (not delivered)."""
        ...

    def close(self) -> None: ...


def from_transport(name: str) -> property:
    """A read-only sink attribute that reads the transport's attribute *name* (``written_bytes``, ...)."""
    return property(lambda sink: getattr(sink.transport, name), doc=f"The transport's ``{name}``.")


class QueuedSink:
    """*transport* (taken: closed by :meth:`close`) fed with events formatted by ``format()``.

    Counters: ``accepted_events`` (queued), ``dropped_events`` (refused: backlog full, output stopped or
    sink closed; or accepted and then lost by the transport or at close).
    """

    def __init__(self, transport: Transport, format: Callable[[], Format], *, flush_interval_s: float = 0.1,
                 wake_bytes: int = 1, max_backlog_bytes: int = 64 * 1024 * 1024) -> None:
        self.transport = transport
        self.flush_interval_s = flush_interval_s
        self.wake_bytes = wake_bytes
        self.max_backlog_bytes = max_backlog_bytes
        self.accepted_events = 0
        self.dropped_events = 0
        self._format = format()
        self._batch_format = format()  # emit_many's, used outside _lock under _batch_lock
        self._batch_lock = threading.Lock()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # writer -> flush(): _done_bytes advanced
        self._pending = bytearray()  # queued units, not yet taken by the writer
        self._ends: list[int] = []  # each pending unit's end offset in _pending
        self._taken_events = 0  # accepted_events when the writer last took _pending
        self._queued_bytes = 0  # ever accepted (monotonic), guarded by _lock
        self._done_bytes = 0  # ever delivered or dropped after acceptance (monotonic), guarded by _lock
        self._wake = threading.Event()
        self._closing = False
        self._refusing = False  # closing, or the transport stopped
        self._frame = transport.framer(self._format)
        self._writer = threading.Thread(target=self._run, name=f"pybpfguard-{transport.name}", daemon=True)
        self._writer.start()
        atexit.register(self.close)

    @property
    def backlog_bytes(self) -> int:
        """Bytes accepted but not yet delivered (or dropped)."""
        return self._queued_bytes - self._done_bytes

    def emit(self, event: msgspec.Struct) -> None:
        """Queue *event*; returns without waiting on the output. A full backlog drops it (counted)."""
        with self._lock:  # inlined: this is the responders' path, one call per event
            buf = self._pending
            start = len(buf)
            self._frame(event, buf)
            end = len(buf)
            if self._refusing or self._queued_bytes - self._done_bytes + end - start > self.max_backlog_bytes:
                del buf[start:]
                self.dropped_events += 1
                return
            self._ends.append(end)
            self._queued_bytes += end - start
            self.accepted_events += 1
            if start < self.wake_bytes <= end:
                self._wake.set()

    def emit_many(self, events: list[msgspec.Struct]) -> None:
        """Queue several events (the event loop's batch path): framed outside ``_lock``, so a responder
        calling :meth:`emit` never waits on a batch's formatting, then queued with one append under it.
        When they do not all fit, falls back to :meth:`emit` per event (those that fit go)."""
        if not events:
            return
        with self._batch_lock:
            data, ends = self.transport.frame_many(self._batch_format, events)
        with self._lock:
            buf = self._pending
            start = len(buf)
            if not self._refusing and self._queued_bytes - self._done_bytes + len(data) <= self.max_backlog_bytes:
                buf += data
                self._ends += [start + end for end in ends] if start else ends
                self._queued_bytes += len(data)
                self.accepted_events += len(events)
                if start < self.wake_bytes <= len(buf):
                    self._wake.set()
                return
        for event in events:
            self.emit(event)

    def flush(self, timeout_s: float = 1.0) -> bool:
        """Ask the writer to deliver everything queued so far; wait up to *timeout_s* seconds.

        Returns True when all of it was delivered or dropped by the transport, False on timeout (the
        output is stalled) or when the transport stopped.
        """
        with self._lock:
            target = self._queued_bytes
        self._wake.set()
        with self._idle:
            done = self._idle.wait_for(lambda: self._done_bytes >= target, timeout_s)
        return done and not self.transport.stopped

    def close(self, timeout_s: float = 2.0) -> None:
        """Deliver what is queued (waiting at most *timeout_s*), drop and count what is still queued then,
        stop the writer, close the transport. Idempotent."""
        if self._closing:
            return
        atexit.unregister(self.close)
        self.flush(timeout_s)
        with self._lock:
            self._closing = self._refusing = True
            self.dropped_events += self.accepted_events - self._taken_events  # queued, never taken
            self._done_bytes += len(self._pending)
            self._take()
        self._wake.set()
        self._writer.join(timeout_s)
        self.transport.close()

    def _take(self) -> tuple[bytearray, list[int]]:
        """Empty the pending units; return them and their end offsets. Under ``_lock``."""
        taken = self._pending, self._ends
        self._pending, self._ends, self._taken_events = bytearray(), [], self.accepted_events
        return taken

    def _is_closing(self) -> bool:
        return self._closing

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            with self._lock:
                closing = self._closing
                data, ends = self._take()
            lost = self.transport.deliver(data, ends, self._is_closing) if data else 0
            with self._lock:
                self.dropped_events += lost
                self._done_bytes += len(data)
                self._refusing |= self.transport.stopped
                self._idle.notify_all()
            if closing:
                return
