"""Events reach a real systemd-journald (started privately) with MESSAGE and every AEGIS_* field."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from pybpfguard.agent.cgroups import CgroupCache
from pybpfguard.agent.events import model
from pybpfguard.agent.events.decode import RecordDecoder
from pybpfguard.agent.events.journald import JournaldSink, priority
from pybpfguard.agent.events.records import BLOCK, ActionCode

JOURNALD = "/lib/systemd/systemd-journald"
CONF = """[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
RateLimitIntervalSec=0
Audit=no
"""


class PrivateJournald:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        root = Path(f"/proc/{proc.pid}/root")
        self.socket = str(root / "run/systemd/journal/socket")
        self.journal_dir = root / "run/log/journal"

    def entries(self, want: int, timeout_s: float = 10.0) -> list[dict]:
        """Our entries (SYSLOG_IDENTIFIER=aegisbpf), waiting until *want* are there."""
        deadline = time.monotonic() + timeout_s
        while True:
            out = subprocess.run(["journalctl", "-D", str(self.journal_dir), "-o", "json", "--all", "--no-pager",
                                  "SYSLOG_IDENTIFIER=aegisbpf"], capture_output=True, check=True).stdout
            found = [json.loads(line) for line in out.splitlines() if line]
            if len(found) >= want or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


@pytest.fixture
def private_journald(kernel, tmp_path: Path) -> Iterator[PrivateJournald]:
    """systemd-journald in its own mount namespace: tmpfs over /run/systemd and /run/log, a private
    journald.conf (volatile, no kmsg, no forwarding). The system's journal is not touched. Killed after."""
    if not (os.access(JOURNALD, os.X_OK) and shutil.which("unshare") and shutil.which("journalctl")):
        pytest.skip("systemd-journald, unshare or journalctl missing")
    conf = tmp_path / "journald.conf"
    conf.write_text(CONF)
    script = ("mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/log && mount -t tmpfs tmpfs /run/log && "
              f"mount --bind {conf} /etc/systemd/journald.conf && exec {JOURNALD}")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jd = PrivateJournald(proc)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(jd.socket):
            assert proc.poll() is None, f"journald exited with {proc.returncode}"
            assert time.monotonic() < deadline, "journald socket did not appear"
            time.sleep(0.05)
        yield jd
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _field(entry: dict, key: str) -> bytes:
    value = entry[key]
    return bytes(value) if isinstance(value, list) else value.encode()  # journalctl gives binary as a byte list


def _block(path: bytes, action: ActionCode = ActionCode.TERM) -> msgspec.Struct:
    rec = BLOCK.pack(pid=4242, ppid=4000, start_time=7, parent_start_time=3, cgid=1, comm=b"cat", ino=11,
                     dev=271581186, action=action, path=path)
    return RecordDecoder(CgroupCache()).decode(memoryview(rec))


def test_block_event_arrives_with_message_json_identifier_priority_and_aegis_fields(private_journald) -> None:
    sink = JournaldSink(private_journald.socket)
    event = _block(b"/tmp/secret")
    sink.emit(event)
    sink.close()
    (entry,) = private_journald.entries(1)
    assert json.loads(entry["MESSAGE"]) == msgspec.to_builtins(event) | {"type": "block"}
    assert entry["MESSAGE"] == msgspec.json.encode(event).decode()
    assert (entry["SYSLOG_IDENTIFIER"], entry["SYSLOG_FACILITY"], entry["PRIORITY"]) == ("aegisbpf", "16", "4")
    assert entry["AEGIS_TYPE"] == "block"
    for name in model.BlockEvent.__struct_fields__:
        value = getattr(event, name)
        if value is msgspec.UNSET:
            assert f"AEGIS_{name.upper()}" not in entry
        else:
            assert entry[f"AEGIS_{name.upper()}"] == str(value), name
    assert (sink.events, sink.dropped_events) == (1, 0)


def test_odd_and_non_utf8_path_reaches_journal_as_raw_bytes(private_journald) -> None:
    raw = b"/tmp/new\nline\t\"q\"\\\xff"
    sink = JournaldSink(private_journald.socket)
    sink.emit(_block(raw, ActionCode.AUDIT))
    sink.close()
    (entry,) = private_journald.entries(1)
    assert _field(entry, "AEGIS_PATH") == raw  # binary-safe length-prefixed form
    assert base64.b64decode(entry["AEGIS_PATH_B64"]) == raw
    assert "\n" not in entry["MESSAGE"] and entry["PRIORITY"] == "6"  # AUDIT is info


def test_message_too_big_for_a_datagram_goes_through_a_sealed_memfd(private_journald) -> None:
    argv = [f"arg{i:06d}-" + "x" * 90 for i in range(4000)]  # about 400 KB: beyond any datagram
    event = model.ExecArgvEvent(pid=1, start_time=2, exec_id="1:2", trace_id="1:2", argc=len(argv), argv=argv)
    sink = JournaldSink(private_journald.socket)
    sink.emit(event)
    sink.close()
    (entry,) = private_journald.entries(1)
    assert sink.memfd_events == 1
    assert json.loads(entry["AEGIS_ARGV"]) == argv and json.loads(entry["MESSAGE"])["argc"] == 4000


def test_every_sample_type_gets_the_reference_priority(private_journald, sample_events) -> None:
    sink = JournaldSink(private_journald.socket)
    sink.emit_many(sample_events)
    sink.close()
    entries = private_journald.entries(len(sample_events))
    got = {e["AEGIS_TYPE"]: e["PRIORITY"] for e in entries}
    assert got == {model.tag_of(ev): str(priority(ev)) for ev in sample_events}


def test_stalled_journald_never_blocks_the_sender_and_drops_are_counted(private_journald) -> None:
    sink = JournaldSink(private_journald.socket, max_backlog_bytes=200_000)
    event = _block(b"/tmp/f")
    os.kill(private_journald.proc.pid, signal.SIGSTOP)
    try:
        sender = threading.Thread(target=lambda: [sink.emit(event) for _ in range(5000)], daemon=True)
        sender.start()
        sender.join(30)
        assert not sender.is_alive(), "emit blocked on a stalled journald"
        assert sink.dropped_events > 0
    finally:
        os.kill(private_journald.proc.pid, signal.SIGCONT)
    assert sink.flush(10)
    assert sink.events + sink.dropped_events == 5000
    assert len(private_journald.entries(sink.events)) == sink.events  # what was accepted arrives
    sink.close()


def test_burst_larger_than_the_datagram_queue_is_delivered_whole(private_journald) -> None:
    sink = JournaldSink(private_journald.socket)
    for i in range(300):
        sink.emit(_block(b"/tmp/burst-%d" % i))
    assert sink.flush(10) and (sink.events, sink.dropped_events) == (300, 0)
    assert len(private_journald.entries(300)) == 300
    sink.close()


def test_absent_journald_drops_and_counts_without_raising(tmp_path: Path) -> None:
    sink = JournaldSink(str(tmp_path / "no-such-socket"))
    sink.emit(_block(b"/tmp/f"))
    assert sink.flush(5)
    assert (sink.events, sink.dropped_events, sink.last_errno) == (0, 1, 2)  # ENOENT
    sink.close()
