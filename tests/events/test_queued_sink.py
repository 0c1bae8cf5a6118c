"""QueuedSink with in-memory transports: order, flush, backlog drops, close; a sink is format x transport."""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable

import msgspec

from pybpfguard.agent.events.encode import LineEncoder
from pybpfguard.agent.events.journald import JournaldTransport
from pybpfguard.agent.events.model import DiagEvent
from pybpfguard.agent.events.queued import Format, QueuedSink
from pybpfguard.agent.events.stdout import StdoutSink


def _diag(i: int) -> DiagEvent:
    return DiagEvent(diag_type=1, timestamp=i, msg=f"event {i}")


class Recorder:
    """A datagram transport that keeps each unit; :attr:`gate` held clear stalls it (until closing)."""

    name = "recorder"
    stopped = False

    def __init__(self) -> None:
        self.units: list[bytes] = []
        self.gate = threading.Event()
        self.gate.set()
        self.closed = False

    def framer(self, fmt: Format) -> Callable[[msgspec.Struct, bytearray], None]:
        return lambda event, out: out.extend(fmt.encode(event))

    def frame_many(self, fmt: Format, events: list[msgspec.Struct]) -> tuple[bytes, list[int]]:
        out, ends = bytearray(), []
        for event in events:
            out += fmt.encode(event)
            ends.append(len(out))
        return out, ends

    def deliver(self, data: bytearray, ends: list[int], closing: Callable[[], bool]) -> int:
        lost = 0
        for unit in (bytes(data[a:b]) for a, b in zip([0, *ends], ends, strict=False)):
            while not self.gate.wait(0.01):
                if closing():
                    break
            if self.gate.is_set():
                self.units.append(unit)
            else:
                lost += 1
        return lost

    def close(self) -> None:
        self.closed = True


class Upper:
    """A second format: JSON with every letter upper-cased (to see the format is the sink's choice)."""

    def __init__(self) -> None:
        self._json = LineEncoder()

    def encode(self, event: msgspec.Struct) -> bytes:
        return self._json.encode(event).upper()

    def append(self, event: msgspec.Struct, out: bytearray) -> None:
        out += self._json.lines([event]).upper()

    def lines(self, events: list[msgspec.Struct]) -> bytes:
        return self._json.lines(events).upper()


def test_units_arrive_in_emit_order_across_emit_and_emit_many() -> None:
    transport = Recorder()
    sink = QueuedSink(transport, LineEncoder)
    sink.emit(_diag(0))
    sink.emit_many([_diag(i) for i in range(1, 50)])
    sink.emit(_diag(50))
    assert sink.flush(5)
    sink.close()
    assert transport.units == [msgspec.json.encode(_diag(i)) for i in range(51)]
    assert (sink.accepted_events, sink.dropped_events, sink.backlog_bytes, transport.closed) == (51, 0, 0, True)


def test_stalled_transport_bounds_the_backlog_then_close_drops_and_counts_the_rest() -> None:
    transport = Recorder()
    transport.gate.clear()
    one = len(msgspec.json.encode(_diag(0)))
    sink = QueuedSink(transport, LineEncoder, max_backlog_bytes=10 * one)
    for i in range(30):
        sink.emit(_diag(i))
    assert sink.accepted_events == 10 and sink.dropped_events == 20  # never waits, counts the refusals
    assert sink.flush(0.2) is False
    sink.close(timeout_s=1.0)  # the flush waits it out, then the writer gets as long to stop
    assert transport.units == [] and sink.dropped_events == 30
    sink.emit(_diag(99))  # after close: refused, counted
    assert sink.dropped_events == 31


def test_stdout_transport_with_another_format_writes_that_format() -> None:
    r, w = os.pipe()
    sink = StdoutSink(w, format=Upper)
    try:
        sink.emit(_diag(1))
        sink.emit_many([_diag(2), _diag(3)])
        assert sink.flush(5)
        assert select.select([r], [], [], 5)[0]
        assert os.read(r, 65536) == LineEncoder().lines([_diag(1), _diag(2), _diag(3)]).upper()
    finally:
        sink.close()
        os.close(r)
        os.close(w)


def test_journald_message_is_the_format_and_the_fields_stay_the_events() -> None:
    transport = JournaldTransport("/nonexistent")
    try:
        entry = bytearray()
        transport.framer(Upper())(_diag(7), entry)
    finally:
        transport.close()
    assert entry.startswith(b"MESSAGE=" + LineEncoder().encode(_diag(7)).upper() + b"\n")
    assert b"\nAEGIS_MSG=event 7\n" in entry
