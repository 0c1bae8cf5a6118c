"""Fixtures for the fanotify file guard: a running FileGuard over in-memory rules, and a child runner.

Every opener is a child process (tests/guard/opener.py) with a timeout, so a hung answer fails the test
instead of hanging it; the guard is stopped (marks removed, pending opens allowed) after each test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pybpfguard.agent.file_guard import EnforceSignal, FileGuard, MemoryRules, Mode
from pybpfguard.agent.maps import PinnedMaps
from pybpfguard.agent.statefiles import DenyDb
from tests.decision_table import own_cgid

__all__ = ["OPENER", "GuardFactory", "child_errno", "deny_db", "in_cgroup", "make_guard", "own_cgid", "parse_result",
           "pins", "run_child", "take", "two_cgroups"]

OPENER = Path(__file__).with_name("opener.py")
CHILD_TIMEOUT_S = 20


def run_child(op: str, *args: bytes | str, prefix: list[str] | None = None,
              timeout_s: float = CHILD_TIMEOUT_S) -> tuple[subprocess.CompletedProcess[str], dict | None]:
    """Run opener.py *op* with hex-encoded *args* (after *prefix*, e.g. ``unshare -m ...``); returns the
    process and its JSON result (None if it printed none, e.g. killed by a signal)."""
    argv = [sys.executable, str(OPENER), op, *(os.fsencode(a).hex() for a in args)]
    proc = subprocess.run([*(prefix or []), *argv], capture_output=True, text=True, timeout=timeout_s)
    return proc, parse_result(proc)


def parse_result(proc: subprocess.CompletedProcess[str]) -> dict | None:
    """The child's JSON result without its ``pid`` (set as ``proc.pid``); None when it printed none."""
    lines = proc.stdout.strip().splitlines()
    if not lines:
        return None
    out = json.loads(lines[-1])
    proc.pid = out.pop("pid")  # type: ignore[attr-defined]
    return out


def child_errno(op: str, *args: bytes | str, prefix: list[str] | None = None) -> int:
    proc, out = run_child(op, *args, prefix=prefix)
    assert out is not None, f"child printed nothing: rc={proc.returncode} stderr={proc.stderr[-2000:]}"
    return int(out["errno"])


GuardFactory = Callable[..., tuple[FileGuard, MemoryRules]]


@pytest.fixture
def make_guard(kernel: None) -> Iterator[GuardFactory]:
    """``make_guard(mode=Mode.ENFORCE, enforce_signal=EnforceSignal.NONE, **kw)`` -> (guard, rules):
    a started FileGuard over empty MemoryRules; every guard made is stopped at teardown."""
    guards: list[FileGuard] = []

    def make(mode: Mode = Mode.ENFORCE, enforce_signal: EnforceSignal = EnforceSignal.NONE,
             **kw: object) -> tuple[FileGuard, MemoryRules]:
        rules = MemoryRules()
        guard = FileGuard(rules, mode=mode, enforce_signal=enforce_signal, **kw)  # type: ignore[arg-type]
        guards.append(guard)
        guard.start()
        return guard, rules

    yield make
    for g in guards:
        g.stop()
        assert not g.errors, g.errors


def take(guard: FileGuard, n: int, timeout_s: float = 5.0) -> list:
    """Exactly *n* decisions. The responder queues a decision just *after* answering, so the child may
    be gone before it is queued: wait for each, then check that no further one arrives (every counted
    block that was not dropped is queued before the next event is read)."""
    out = [guard.decisions.get(timeout=timeout_s) for _ in range(n)]
    stats = guard.stats()
    assert stats.blocks - stats.dropped == n, (stats, out)
    assert guard.decisions.empty()
    return out


def in_cgroup(cgroup: Path) -> list[str]:
    """A :func:`run_child` prefix that moves the child into *cgroup* before it acts."""
    return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(cgroup)]


@pytest.fixture
def two_cgroups(test_cgroup: Path) -> Iterator[tuple[Path, Path]]:
    """Cgroups A and B inside the test cgroup (which holds no process itself); removed after the test (every
    child run in them has exited by then)."""
    pair = (test_cgroup / "a", test_cgroup / "b")
    for cg in pair:
        cg.mkdir()
    try:
        yield pair
    finally:
        for cg in pair:
            cg.rmdir()


@pytest.fixture
def pins(bpffs: Path) -> Iterator[PinnedMaps]:
    """The agent's pinned maps under this test's private bpffs."""
    with PinnedMaps.open(bpffs / "pins") as opened:
        yield opened


@pytest.fixture
def deny_db(tmp_path: Path) -> DenyDb:
    """An empty deny.db in a private state directory of this test."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return DenyDb(state / "deny.db")
