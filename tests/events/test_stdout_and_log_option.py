"""The stdout sink batches, flushes by itself, never blocks its caller; --log builds the sink set."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import threading
from pathlib import Path

import pytest

from pybpfguard.agent.events.journald import JournaldSink
from pybpfguard.agent.events.model import DiagEvent
from pybpfguard.agent.events.sinks import LogOptionError, LogTarget, build_sinks, parse_log
from pybpfguard.agent.events.stdout import StdoutSink

F_SETPIPE_SZ = 1031  # include/uapi/linux/fcntl.h (F_LINUX_SPECIFIC_BASE + 7)


def _diag(i: int) -> DiagEvent:
    return DiagEvent(diag_type=1, timestamp=i, msg="line\nwith\ttab \"q\" \\")


def _read_all(fd: int) -> bytes:
    chunks = []
    while select.select([fd], [], [], 0.5)[0]:
        data = os.read(fd, 1 << 20)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def test_an_event_reaches_the_pipe_without_any_flush_call(event_validator) -> None:
    r, w = os.pipe()
    sink = StdoutSink(w)
    try:
        sink.emit(_diag(1))
        assert select.select([r], [], [], 5)[0], "the periodic flush did not write the line"
        line = os.read(r, 65536)
        assert line.endswith(b"\n") and event_validator(line)[0]["timestamp"] == 1
    finally:
        sink.close()
        os.close(r)
        os.close(w)


def test_close_writes_every_queued_line_to_the_file(tmp_path: Path, event_validator) -> None:
    path = tmp_path / "events.jsonl"
    with open(path, "wb") as f:
        sink = StdoutSink(f.fileno())
        sink.emit_many([_diag(i) for i in range(5000)])
        for i in range(5000, 6000):
            sink.emit(_diag(i))
        sink.close()
    objs = event_validator(path.read_bytes())
    assert [o["timestamp"] for o in objs] == list(range(6000))
    assert sink.written_bytes == path.stat().st_size and sink.dropped_events == 0


def test_full_pipe_never_blocks_emit_lines_stay_whole_and_drops_are_counted(event_validator) -> None:
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
    sink = StdoutSink(w, max_backlog_bytes=256 * 1024)
    try:
        emitter = threading.Thread(target=lambda: [sink.emit(_diag(i)) for i in range(20000)], daemon=True)
        emitter.start()
        emitter.join(30)
        assert not emitter.is_alive(), "emit blocked on a full pipe"
        assert sink.dropped_events > 0 and sink.events + sink.dropped_events == 20000
        got = bytearray()
        reader = threading.Thread(target=lambda: got.extend(_read_all(r)), daemon=True)
        reader.start()
        assert sink.flush(10)
        reader.join(30)
        objs = event_validator(bytes(got))
        assert len(objs) == sink.events  # every accepted line arrived, none split
    finally:
        sink.close()
        os.close(r)
        os.close(w)


def test_reader_gone_stops_output_with_epipe_and_counts_the_loss() -> None:
    r, w = os.pipe()
    os.close(r)
    sink = StdoutSink(w)
    sink.emit(_diag(1))
    assert sink.flush(5) is False
    assert sink.write_errno == errno.EPIPE
    sink.emit(_diag(2))
    assert sink.dropped_events == 2
    sink.close()
    os.close(w)


@pytest.mark.parametrize(("value", "targets"), [
    ("stdout", {LogTarget.STDOUT}),
    ("journald", {LogTarget.JOURNALD}),
    ("both", {LogTarget.STDOUT, LogTarget.JOURNALD}),
    ("stdout,journald", {LogTarget.STDOUT, LogTarget.JOURNALD}),
    ("stdout,syslog", {LogTarget.STDOUT, LogTarget.SYSLOG}),
])
def test_log_option_values_of_the_reference_parse(value: str, targets: set) -> None:
    assert parse_log(value) == targets


@pytest.mark.parametrize("value", ["", "file", "stdout,,journald", "json"])
def test_unknown_log_value_is_refused_naming_it(value: str) -> None:
    with pytest.raises(LogOptionError, match="unknown sink"):
        parse_log(value)


def test_log_both_builds_stdout_then_journald(tmp_path: Path) -> None:
    r, w = os.pipe()
    sinks = build_sinks(parse_log("both"), stdout_fd=w, journal_socket=str(tmp_path / "sock"))
    try:
        assert [type(s) for s in sinks.sinks] == [StdoutSink, JournaldSink]
        sinks.emit(_diag(3))
        assert select.select([r], [], [], 5)[0]
    finally:
        sinks.close()
        os.close(r)
        os.close(w)


def test_syslog_sink_request_is_refused_until_it_exists() -> None:
    with pytest.raises(LogOptionError, match="syslog"):
        build_sinks(parse_log("syslog"))
