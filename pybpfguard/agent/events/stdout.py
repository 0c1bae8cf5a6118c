"""The fd transport: formatted lines written to a file descriptor (stdout), and ``StdoutSink`` = JSON x fd.

The output is a stream, so a batch of events is one unit and the writer thread writes everything queued
with as few ``write`` calls as the fd takes. Lines accumulate in memory up to ``batch_bytes`` (64 KiB) or
100 ms before a write (:mod:`.queued`). When the reader of the pipe goes away (EPIPE, EBADF), what was
not written is counted as dropped, and so is every later event (never a hang, never a partial line).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import msgspec

from pybpfguard.agent.events.encode import LineEncoder
from pybpfguard.agent.events.queued import Format, QueuedSink, from_transport


class FdTransport:
    """Writes lines to *fd* (borrowed: not closed). Counters: ``written_bytes``, ``write_errno`` (the errno
    that stopped the output, 0 while healthy)."""

    name = "stdout"

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.written_bytes = 0
        self.write_errno = 0
        self.stopped = False

    def framer(self, fmt: Format) -> Callable[[msgspec.Struct, bytearray], None]:
        return fmt.append

    def frame_many(self, fmt: Format, events: list[msgspec.Struct]) -> tuple[bytes, list[int]]:
        data = fmt.lines(events)
        return data, [len(data)]

    def deliver(self, data: bytearray, ends: list[int], closing: Callable[[], bool]) -> int:
        """Write *data* as one stream (units need no bounds); a blocking fd waits for its reader. Returns the
        lines lost."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError as err:
                # EPIPE/EBADF: nobody reads any more. Count what is lost, stop accepting, keep the errno.
                self.write_errno = err.errno or -1
                self.stopped = True
                return data.count(10, len(data) - len(view))
            view = view[n:]
            self.written_bytes += n
        return 0

    def close(self) -> None:
        pass  # the fd is borrowed


class StdoutSink(QueuedSink):
    """Events as lines (JSON by default, ``format``) to *fd* (borrowed, default 1).

    Counters: ``events`` (accepted), ``dropped_events`` (refused: backlog full or output broken; or
    accepted but lost when the output broke), ``written_bytes``, ``write_errno`` (see :class:`FdTransport`).
    """

    transport: FdTransport

    def __init__(self, fd: int = 1, *, flush_interval_s: float = 0.1, batch_bytes: int = 64 * 1024,
                 max_backlog_bytes: int = 64 * 1024 * 1024, format: Callable[[], Format] = LineEncoder) -> None:
        super().__init__(FdTransport(fd), format, flush_interval_s=flush_interval_s, wake_bytes=batch_bytes,
                         max_backlog_bytes=max_backlog_bytes)

    fd = from_transport("fd")
    events = property(lambda sink: sink.accepted_events, doc="Events accepted (queued).")
    written_bytes = from_transport("written_bytes")
    write_errno = from_transport("write_errno")
