"""The JSON format (docs/events.md): event Struct -> compact JSON, one line per event (a sink ``Format``).

msgspec writes compact JSON (``,`` and ``:`` with no spaces), UTF-8, and escapes ``"``, ``\\`` and
U+0000-U+001F, so a newline or tab in a file name can never split a line. One ``Encoder`` per
:class:`LineEncoder`, reused; ``encode_into`` appends to the buffer, then the newline is appended. A
batch is one ``encode_lines`` call (newline-delimited JSON, the same bytes as one ``append`` per event,
about twice as fast per event since the loop runs in C).
"""

from __future__ import annotations

import msgspec


class LineEncoder:
    """Appends events to a ``bytearray`` as JSON lines. Not thread-safe (one per sink or thread)."""

    __slots__ = ("_encoder",)

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()

    def append(self, event: msgspec.Struct, out: bytearray) -> None:
        """Append *event* as one JSON object and ``\\n`` to *out*."""
        self._encoder.encode_into(event, out, -1)
        out.append(10)

    def extend(self, events: list[msgspec.Struct], out: bytearray) -> None:
        """Append every event of *events* as one line each."""
        out += self._encoder.encode_lines(events)

    def lines(self, events: list[msgspec.Struct]) -> bytes:
        """*events* as JSON lines, each ending in ``\\n`` (b"" for no events)."""
        return self._encoder.encode_lines(events)

    def encode(self, event: msgspec.Struct) -> bytes:
        """*event* as JSON bytes without the newline (for sinks that frame each message, like journald)."""
        return self._encoder.encode(event)
