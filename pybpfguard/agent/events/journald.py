"""The journald sink: systemd's native protocol over a non-blocking datagram socket (REFERENCE §5.1).

Each event is one datagram of ``FIELD=value\\n`` lines (systemd.journal-fields(7), "Native Journal
Protocol"): ``MESSAGE=<event JSON>``, ``SYSLOG_IDENTIFIER=aegisbpf``, ``SYSLOG_FACILITY=16`` (local0),
``PRIORITY`` (6 info, 5 notice, 4 warning, per §5.1), ``AEGIS_TYPE`` and ``AEGIS_<FIELD>`` for every
other top-level field. A value holding a newline uses the binary-safe form
``FIELD\\n<u64 le length><bytes>\\n``. A message too big for one datagram (EMSGSIZE) goes in a sealed
memfd passed with SCM_RIGHTS, as sd_journal_sendv does. The socket is non-blocking: when journald
stalls and its queue is full, the event is dropped and counted, and the agent never waits.
"""

from __future__ import annotations

import array
import atexit
import collections
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import UNSET

from pybpfguard.agent.events.encode import LineEncoder
from pybpfguard.agent.events.model import EVENT_TYPES, Action, DiagEvent, StateChangeEvent, tag_of
from pybpfguard.agent.events.text import raw_bytes

JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_IDENTIFIER = b"aegisbpf"
SYSLOG_FACILITY = 16  # local0
LOG_WARNING, LOG_NOTICE, LOG_INFO = 4, 5, 6  # syslog(3) priorities
_U64 = struct.Struct("<Q")
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def _action_priority(event: Any) -> int:
    return LOG_INFO if event.action == Action.AUDIT else LOG_WARNING


def _state_priority(event: Any) -> int:
    return LOG_WARNING if event.state in ("AUDIT_FALLBACK", "DEGRADED") else LOG_INFO


def _priority_rule(cls: type[msgspec.Struct]) -> Callable[[Any], int]:
    if cls is DiagEvent:
        return lambda _e: LOG_NOTICE
    if cls is StateChangeEvent:
        return _state_priority
    if cls.__annotations__.get("action") is Action:
        return _action_priority
    return lambda _e: LOG_INFO


_PRIORITY: dict[type, Callable[[Any], int]] = {cls: _priority_rule(cls) for cls in EVENT_TYPES}


def priority(event: msgspec.Struct) -> int:
    """The journal PRIORITY of *event* (REFERENCE §5.1): 4 enforced denials and degraded states,
    5 diag, 6 everything else (exec, exec_argv, AUDIT actions, control_change, overlay_copy_up)."""
    return _PRIORITY[type(event)](event)


def _fields_of(cls: type[msgspec.Struct]) -> tuple[tuple[str, bytes, str | None], ...]:
    """(field, journal key, b64 sibling or None) for each field; the raw bytes are the b64's."""
    names = cls.__struct_fields__
    return tuple((n, b"AEGIS_" + n.upper().encode(), f"{n}_b64" if f"{n}_b64" in names else None) for n in names)


_FIELDS = {cls: _fields_of(cls) for cls in EVENT_TYPES}


def _put(out: bytearray, key: bytes, value: bytes) -> None:
    if b"\n" in value:
        out += key
        out.append(10)
        out += _U64.pack(len(value))
        out += value
    else:
        out += key
        out.append(61)  # '='
        out += value
    out.append(10)


class JournaldSink:
    """Sends each event to journald at *socket_path* (default the system journal's socket).

    :meth:`emit` builds the entry and queues it; a sender thread sends. The thread, not the caller,
    waits when journald's datagram queue is full (``net.unix.max_dgram_qlen``, 10 on hosts where
    systemd did not raise it, so a burst of a dozen events already fills it). Past
    *max_backlog_bytes* queued, events are dropped. Counters: ``events`` (sent), ``dropped_events``,
    ``memfd_events`` (sent through a memfd), ``last_errno`` (errno of the last failed send, 0 if none).
    """

    def __init__(self, socket_path: str = JOURNAL_SOCKET, *, max_backlog_bytes: int = 16 * 1024 * 1024,
                 send_timeout_s: float = 0.2) -> None:
        self.socket_path = socket_path
        self.max_backlog_bytes = max_backlog_bytes
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # A blocking send that gives up after send_timeout_s (EAGAIN), so close() is never held up.
        self._sock.settimeout(send_timeout_s)
        self._encoder = LineEncoder()
        self._json = msgspec.json.Encoder()
        self.events = 0
        self.dropped_events = 0
        self.memfd_events = 0
        self.last_errno = 0
        self._queue: collections.deque[bytes] = collections.deque()
        self._backlog = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._closing = False
        self._sender = threading.Thread(target=self._run, name="pybpfguard-journald", daemon=True)
        self._sender.start()
        atexit.register(self.close)

    def entry(self, event: msgspec.Struct) -> bytes:
        """The native-protocol datagram for *event*."""
        out = bytearray()
        _put(out, b"MESSAGE", self._encoder.encode(event))
        out += b"SYSLOG_IDENTIFIER=%s\nSYSLOG_FACILITY=%d\nPRIORITY=%d\nAEGIS_TYPE=%s\n" % (
            SYSLOG_IDENTIFIER, SYSLOG_FACILITY, priority(event), tag_of(event).encode())
        for name, key, sibling in _FIELDS[type(event)]:
            value = getattr(event, name)
            if value is UNSET:
                continue
            if isinstance(value, str):
                data = raw_bytes(value, getattr(event, sibling)) if sibling else value.encode()
            elif isinstance(value, bool):
                data = b"true" if value else b"false"
            elif isinstance(value, int):
                data = b"%d" % value
            else:
                data = self._json.encode(value)  # arrays: compact JSON
            _put(out, key, data)
        return bytes(out)

    def emit(self, event: msgspec.Struct) -> None:
        """Queue *event* for journald; never waits. A full backlog drops it (counted)."""
        data = self.entry(event)
        with self._lock:
            if self._backlog + len(data) > self.max_backlog_bytes or self._closing:
                self.dropped_events += 1
                return
            self._queue.append(data)
            self._backlog += len(data)
        self._wake.set()

    def emit_many(self, events: list[msgspec.Struct]) -> None:
        for event in events:
            self.emit(event)

    def flush(self, timeout_s: float = 1.0) -> bool:
        """Wait up to *timeout_s* seconds until everything queued was sent or dropped."""
        self._wake.set()
        with self._idle:
            return self._idle.wait_for(lambda: not self._queue and not self._backlog, timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Send what is queued (waiting at most *timeout_s*), stop the sender, close the socket. Idempotent."""
        if self._closing:
            return
        atexit.unregister(self.close)
        self.flush(timeout_s)
        with self._lock:
            self._closing = True
            self.dropped_events += len(self._queue)
            self._queue.clear()
            self._backlog = 0
        self._wake.set()
        self._sender.join(timeout_s)
        self._sock.close()

    def _run(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            while self._queue:
                data = self._queue[0]
                done = self._send(data)
                if not done and not self._closing:
                    continue
                with self._lock:
                    if self._queue and self._queue[0] is data:
                        self._queue.popleft()
                        self._backlog -= len(data)
                        self.dropped_events += not done
                    self._idle.notify_all()
            with self._lock:
                self._idle.notify_all()
                if self._closing:
                    return

    def _send(self, data: bytes) -> bool:
        """Send one entry. True when it is done with (sent or dropped), False to retry (queue full)."""
        try:
            self._sock.sendto(data, self.socket_path)
        except TimeoutError:
            return False  # journald is behind: keep the entry, the caller is not waiting on us
        except OSError as err:
            if err.errno == errno.EMSGSIZE:
                return self._send_memfd(data)
            self._dropped(err.errno)
            return True
        self.events += 1
        return True

    def _send_memfd(self, data: bytes) -> bool:
        fd = os.memfd_create("aegisbpf-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)  # journald accepts only a sealed memfd
            self._sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))], 0,
                               self.socket_path)
        except TimeoutError:
            return False
        except OSError as err:
            self._dropped(err.errno)
            return True
        finally:
            os.close(fd)
        self.events += 1
        self.memfd_events += 1
        return True

    def _dropped(self, err: int | None) -> None:
        # ENOENT/ECONNREFUSED (no journald), ENOBUFS: the event is lost, which the counter and
        # last_errno make visible (metrics, health); the agent keeps going.
        with self._lock:
            self.dropped_events += 1
        self.last_errno = err or -1
