"""The journald transport: systemd's native protocol over a datagram socket (docs/events.md), and
``JournaldSink`` = JSON x journald.

Each event is one datagram of ``FIELD=value\\n`` lines (systemd.journal-fields(7), "Native Journal
Protocol"): ``MESSAGE=<the formatted event>``, ``SYSLOG_IDENTIFIER=aegisbpf``, ``SYSLOG_FACILITY=16`` (local0),
``PRIORITY`` (6 info, 5 notice, 4 warning, per docs/events.md), ``AEGIS_TYPE`` and ``AEGIS_<FIELD>`` for every
other top-level field. A value holding a newline uses the binary-safe form
``FIELD\\n<u64 le length><bytes>\\n``. A message too big for one datagram (EMSGSIZE) goes in a sealed
memfd passed with SCM_RIGHTS, as sd_journal_sendv does. Only the writer thread of :mod:`.queued` sends:
when journald stalls and its queue is full, that thread waits, events queue up to the backlog bound and
past it are dropped and counted; the agent never waits.
"""

from __future__ import annotations

import array
import enum
import errno
import fcntl
import functools
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import UNSET

from pybpfguard.agent.events.encode import LineEncoder
from pybpfguard.agent.events.model import EVENT_TYPES, Action, DiagEvent, StateChangeEvent, tag_of
from pybpfguard.agent.events.queued import Format, QueuedSink, from_transport
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
    """The journal PRIORITY of *event* (docs/events.md): 4 enforced denials and degraded states,
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


class _Sent(enum.Enum):
    """What one send attempt did with an entry."""

    DELIVERED = enum.auto()
    LOST = enum.auto()  # dropped: no journald, no buffer space
    RETRY = enum.auto()  # journald's queue is full: try again


class JournaldTransport:
    """One native-protocol datagram per event to journald at *socket_path*.

    The send blocks at most *send_timeout_s* while journald's datagram queue is full
    (``net.unix.max_dgram_qlen``, 10 on hosts where systemd did not raise it, so a burst of a dozen
    events already fills it), then retries until the sink closes. Counters: ``sent_events``,
    ``memfd_events`` (sent through a memfd), ``last_errno`` (errno of the last failed send, 0 if none).
    """

    name = "journald"
    stopped = False  # a missing journald may come back: each event is tried

    def __init__(self, socket_path: str = JOURNAL_SOCKET, *, send_timeout_s: float = 0.2) -> None:
        self.socket_path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # A blocking send that gives up after send_timeout_s (EAGAIN), so close() is never held up.
        self._sock.settimeout(send_timeout_s)
        self._json = msgspec.json.Encoder()
        self.sent_events = 0
        self.memfd_events = 0
        self.last_errno = 0

    def frame(self, fmt: Format, event: msgspec.Struct, out: bytearray) -> None:
        """Append the native-protocol datagram for *event*, its ``MESSAGE`` formatted by *fmt*, to *out*."""
        _put(out, b"MESSAGE", fmt.encode(event))
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

    def framer(self, fmt: Format) -> Callable[[msgspec.Struct, bytearray], None]:
        return functools.partial(self.frame, fmt)

    def frame_many(self, fmt: Format, events: list[msgspec.Struct]) -> tuple[bytearray, list[int]]:
        out = bytearray()
        ends = []
        for event in events:
            self.frame(fmt, event, out)
            ends.append(len(out))
        return out, ends

    def deliver(self, data: bytearray, ends: list[int], closing: Callable[[], bool]) -> int:
        """Send each entry in order, retrying one journald cannot take yet until *closing*. Returns the
        entries lost."""
        lost, start, view = 0, 0, memoryview(data)
        for end in ends:
            entry = view[start:end]
            sent = self._send(entry)
            while sent is _Sent.RETRY and not closing():
                sent = self._send(entry)
            lost += sent is not _Sent.DELIVERED
            start = end
        return lost

    def close(self) -> None:
        self._sock.close()

    def _send(self, data: memoryview) -> _Sent:
        try:
            self._sock.sendto(data, self.socket_path)
        except TimeoutError:
            return _Sent.RETRY  # journald is behind: keep the entry, the caller is not waiting on us
        except OSError as err:
            if err.errno == errno.EMSGSIZE:
                return self._send_memfd(data)
            return self._lost(err.errno)
        self.sent_events += 1
        return _Sent.DELIVERED

    def _send_memfd(self, data: memoryview) -> _Sent:
        fd = os.memfd_create("aegisbpf-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = data
            while view:
                view = view[os.write(fd, view):]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)  # journald accepts only a sealed memfd
            self._sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))], 0,
                               self.socket_path)
        except TimeoutError:
            return _Sent.RETRY
        except OSError as err:
            return self._lost(err.errno)
        finally:
            os.close(fd)
        self.sent_events += 1
        self.memfd_events += 1
        return _Sent.DELIVERED

    def _lost(self, err: int | None) -> _Sent:
        # ENOENT/ECONNREFUSED (no journald), ENOBUFS: the event is lost, which the sink's dropped_events
        # and last_errno make visible (metrics, health); the agent keeps going.
        self.last_errno = err or -1
        return _Sent.LOST


class JournaldSink(QueuedSink):
    """Events to journald at *socket_path* (default the system journal's socket), ``MESSAGE`` formatted
    by ``format`` (JSON by default).

    Counters: ``events`` (sent), ``dropped_events``, ``memfd_events``, ``last_errno`` (see
    :class:`JournaldTransport`).
    """

    transport: JournaldTransport

    def __init__(self, socket_path: str = JOURNAL_SOCKET, *, max_backlog_bytes: int = 16 * 1024 * 1024,
                 send_timeout_s: float = 0.2, format: Callable[[], Format] = LineEncoder) -> None:
        super().__init__(JournaldTransport(socket_path, send_timeout_s=send_timeout_s), format,
                         max_backlog_bytes=max_backlog_bytes)

    socket_path = from_transport("socket_path")
    events = from_transport("sent_events")
    memfd_events = from_transport("memfd_events")
    last_errno = from_transport("last_errno")

    def entry(self, event: msgspec.Struct) -> bytes:
        """The native-protocol datagram for *event*."""
        out = bytearray()
        self._frame(event, out)
        return bytes(out)
