"""The stdout sink: JSON lines batched in memory and written by a writer thread.

The caller (the event loop, or a fanotify responder that must answer the kernel quickly) only encodes
into a ``bytearray`` under a short lock; it never waits on the pipe. A writer thread swaps the batch
out and writes it, when ``batch_bytes`` have accumulated or ``flush_interval_s`` (100 ms) has passed,
and on :meth:`StdoutSink.flush`/:meth:`StdoutSink.close` (also registered with ``atexit``). When the
reader of the pipe stalls, lines accumulate up to ``max_backlog_bytes``; past that, events are
dropped and counted in ``dropped_events`` (never a hang, never a partial line).
"""

from __future__ import annotations

import atexit
import os
import threading

import msgspec

from pybpfguard.agent.events.encode import LineEncoder


class StdoutSink:
    """Writes events as JSON lines to *fd* (borrowed, default 1: not closed by :meth:`close`).

    Counters: ``events`` (accepted), ``dropped_events`` (refused: backlog full or output broken; or
    accepted but lost when the output broke),
    ``written_bytes``, ``write_errno`` (the errno that stopped the output, 0 while healthy).
    """

    def __init__(self, fd: int = 1, *, flush_interval_s: float = 0.1, batch_bytes: int = 64 * 1024,
                 max_backlog_bytes: int = 64 * 1024 * 1024) -> None:
        self.fd = fd
        self.flush_interval_s = flush_interval_s
        self.batch_bytes = batch_bytes
        self.max_backlog_bytes = max_backlog_bytes
        self.events = 0
        self.dropped_events = 0
        self.written_bytes = 0
        self.write_errno = 0
        self._encoder = LineEncoder()
        self._batch_encoder = LineEncoder()  # emit_many's, used outside _lock under _batch_lock
        self._batch_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._queued_bytes = 0  # total bytes ever handed to the writer (monotonic), guarded by _lock
        self._done = threading.Condition()  # writer -> flush(): written_bytes advanced
        self._wake = threading.Event()
        self._closing = False
        self._writer = threading.Thread(target=self._run, name="pybpfguard-stdout", daemon=True)
        self._writer.start()
        atexit.register(self.close)

    @property
    def backlog_bytes(self) -> int:
        """Bytes encoded but not yet written."""
        return len(self._pending)

    def emit(self, event: msgspec.Struct) -> None:
        """Queue *event* as one line; returns without waiting on the output."""
        with self._lock:
            buf = self._pending
            start = len(buf)
            self._encoder.append(event, buf)
            if len(buf) > self.max_backlog_bytes or self.write_errno:
                del buf[start:]
                self.dropped_events += 1
                return
            self.events += 1
            self._queued_bytes += len(buf) - start
            if start < self.batch_bytes <= len(buf):
                self._wake.set()

    def emit_many(self, events: list[msgspec.Struct]) -> None:
        """Queue several events (the event loop's batch path): one ``encode_lines`` outside the lock,
        then one append under it, so a responder thread calling :meth:`emit` never waits on a batch's
        encoding. Near the backlog limit or on a broken output, falls back to :meth:`emit` per event."""
        if not events:
            return
        with self._batch_lock:
            data = self._batch_encoder.lines(events)
        with self._lock:
            buf = self._pending
            start = len(buf)
            if not self.write_errno and start + len(data) <= self.max_backlog_bytes:
                buf += data
                self.events += len(events)
                self._queued_bytes += len(data)
                if start < self.batch_bytes <= len(buf):
                    self._wake.set()
                return
        for event in events:
            self.emit(event)

    def flush(self, timeout_s: float = 1.0) -> bool:
        """Ask the writer to write everything queued so far; wait up to *timeout_s* seconds.

        Returns True when it was written, False on timeout (the output is stalled) or a broken output.
        """
        with self._lock:
            target = self._queued_bytes
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self.written_bytes >= target or self.write_errno != 0,
                                       timeout_s) and self.write_errno == 0

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is queued (waiting at most *timeout_s*), stop the writer. Idempotent."""
        if self._closing:
            return
        atexit.unregister(self.close)
        self.flush(timeout_s)
        self._closing = True
        self._wake.set()
        self._writer.join(timeout_s)

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._write_pending()
        self._write_pending()

    def _write_pending(self) -> None:
        with self._lock:
            if not self._pending:
                return
            data, self._pending = self._pending, bytearray()
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError as err:
                # EPIPE/EBADF: nobody reads any more. Count what is lost, stop accepting, keep the errno.
                with self._lock:
                    self.dropped_events += data.count(10, len(data) - len(view))
                self.write_errno = err.errno or -1
                break
            view = view[n:]
            with self._done:
                self.written_bytes += n
                self._done.notify_all()
        with self._done:
            self._done.notify_all()
