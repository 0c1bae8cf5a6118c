"""FileGuard edge cases: long and odd paths, a flood with a slow consumer, and shutdown."""

from __future__ import annotations

import errno
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from pybpfguard.agent.file_guard import EnforceSignal, FileGuard, MemoryRules, Mode

from .conftest import OPENER, child_errno, parse_result, take

pytestmark = pytest.mark.kernel


def deep_file(root, total_bytes: int) -> bytes:
    """A file whose absolute path is exactly *total_bytes* long, through 200-byte directory names."""
    path = os.fsencode(root)
    while total_bytes - len(path) > 256:  # the last name must fit NAME_MAX (255)
        path += b"/" + b"d" * 200
    os.makedirs(path, exist_ok=True)
    path += b"/" + b"f" * (total_bytes - len(path) - 1)
    with open(path, "wb") as f:
        f.write(b"x")
    assert len(path) == total_bytes
    return path


@pytest.mark.parametrize("mode", [Mode.ENFORCE, Mode.AUDIT], ids=lambda m: m.value)
@pytest.mark.parametrize("length", [300, 4000])
def test_long_denied_path_is_denied_and_decision_carries_whole_path(make_guard, tmp_path, length, mode):
    path = deep_file(tmp_path, length)
    guard, rules = make_guard(mode)
    rules.add(path)
    guard.refresh()
    assert child_errno("open", path) == (errno.EPERM if mode is Mode.ENFORCE else 0)
    [d] = take(guard, 1)
    assert d.path == path and d.path_complete


@pytest.mark.parametrize("mode", [Mode.ENFORCE, Mode.AUDIT], ids=lambda m: m.value)
def test_file_name_with_newline_quote_backslash_tab_and_non_utf8_is_denied(make_guard, tmp_path, mode):
    path = os.fsencode(tmp_path) + b'/a\nb"c\\d\te\xff\xfe name'
    with open(path, "wb") as f:
        f.write(b"x")
    guard, rules = make_guard(mode)
    rules.add(path)
    guard.refresh()
    assert child_errno("open", path) == (errno.EPERM if mode is Mode.ENFORCE else 0)
    [d] = take(guard, 1)
    assert d.path == path


def test_flood_with_slow_consumer_denies_every_open_and_counts_drops_exactly(make_guard, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("x")
    guard, rules = make_guard(Mode.ENFORCE, queue_size=64)
    rules.add(str(secret))
    guard.refresh()
    consumed = 0
    stop = threading.Event()

    def slow_consumer() -> None:
        nonlocal consumed
        while not stop.is_set() or not guard.decisions.empty():
            try:
                guard.decisions.get(timeout=0.05)
            except queue.Empty:
                continue
            consumed += 1
            time.sleep(0.002)

    t = threading.Thread(target=slow_consumer)
    t.start()
    proc = subprocess.run([sys.executable, str(OPENER), "loop", os.fsencode(str(secret)).hex(),
                           b"1.0".hex()], capture_output=True, text=True, timeout=30)
    out = parse_result(proc)
    stop.set()
    t.join(timeout=30)
    assert out is not None, proc.stderr
    stats = guard.stats()
    assert out["allowed"] == 0 and out["other"] == 0 and out["denied"] > 1000
    assert stats.blocks == stats.denied == out["denied"]
    assert stats.dropped > 0 and consumed + stats.dropped == out["denied"]


def test_stop_allows_pending_opens_and_leaves_no_process_stuck(kernel, tmp_path):
    """The responder is held inside one decision; a second opener queues behind it. stop() must let
    the first finish (denied), answer the queued one ALLOW, and leave no child waiting."""
    secret = tmp_path / "secret"
    secret.write_text("x")
    release, entered = threading.Event(), threading.Event()

    def held_identity(pid):
        entered.set()
        release.wait(20)
        return None

    rules = MemoryRules()
    rules.add(str(secret))
    guard = FileGuard(rules, mode=Mode.ENFORCE, enforce_signal=EnforceSignal.NONE,
                      identity=held_identity).start()
    try:
        argv = [sys.executable, str(OPENER), "open", os.fsencode(str(secret)).hex()]
        first = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert entered.wait(20)
        second = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)  # let the second open reach the fanotify queue
        assert second.poll() is None  # waiting for an answer
        stopper = threading.Thread(target=guard.stop)
        stopper.start()
        release.set()
        stopper.join(20)
        assert not stopper.is_alive()
        outs = [p.communicate(timeout=20)[0] for p in (first, second)]
    finally:
        release.set()
        guard.stop()
    assert '"errno": 1' in outs[0]  # answered by the responder before stop
    assert '"errno": 0' in outs[1]  # answered FAN_ALLOW by stop()
    assert child_errno("open", str(secret)) == 0  # marks gone with the group


def test_stop_with_a_stuck_responder_still_releases_every_opener(kernel, tmp_path):
    """A callback that never returns cannot keep stop() or an opener waiting: after the timeout the
    group closes and the kernel allows the open the responder was holding."""
    secret = tmp_path / "secret"
    secret.write_text("x")
    release, entered = threading.Event(), threading.Event()

    def stuck_identity(pid):
        entered.set()
        release.wait(30)
        return None

    rules = MemoryRules()
    rules.add(str(secret))
    guard = FileGuard(rules, mode=Mode.ENFORCE, enforce_signal=EnforceSignal.NONE,
                      identity=stuck_identity).start()
    argv = [sys.executable, str(OPENER), "open", os.fsencode(str(secret)).hex()]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert entered.wait(20)
        guard.stop(timeout_s=0.5)
        out, _ = child.communicate(timeout=20)
    finally:
        release.set()
        guard.stop()
    assert '"errno": 0' in out
    assert any(isinstance(e, TimeoutError) for e in guard.errors)
