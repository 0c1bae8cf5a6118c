"""A rule edit the daemon fails to apply: the daemon keeps running and enforcing, the editor is told the
edit is stored but not confirmed (exit 4), never that it failed (exit 1: nothing changed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pybpfguard.agent import rulesync
from pybpfguard.agent.daemon import Daemon


class FakeSyncMap:
    """rule_sync as a plain list: generation 1 edited, never applied, a fresh heartbeat."""

    def __init__(self) -> None:
        self.slots = [1, 0, rulesync.boottime_ns(), 1234]

    def lookup_elem(self, key: int) -> int:
        if key == rulesync.HEARTBEAT_NS:
            return rulesync.boottime_ns()
        return self.slots[key]

    def update_elem(self, key: int, value: int) -> None:
        self.slots[key] = value


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, object]]] = []

    def error(self, msg: str, **kw: object) -> None:
        self.lines.append(("error", msg, kw))

    def warn(self, msg: str, **kw: object) -> None:
        self.lines.append(("warn", msg, kw))


def test_a_resync_that_raises_in_the_loop_never_ends_the_daemon_and_is_retried_a_second_later():
    calls = []

    def resync(reason_code: str = "") -> None:
        calls.append(reason_code)
        raise OSError(28, "No space left on device")  # e.g. runtime.json on a full /run

    fake = SimpleNamespace(_rule_sync=rulesync.DaemonSync(FakeSyncMap()), resync=resync, log=Log(),
                           _rules_retry_at=0.0)
    for now in (10.0, 10.1, 10.5, 11.05):
        Daemon._follow_rule_edits(fake, now)  # type: ignore[arg-type]
    assert calls == ["RULES_CHANGED", "RULES_CHANGED"]  # not every 100 ms turn: once a second
    assert [(level, kw["error"]) for level, _, kw in fake.log.lines] == [
        ("error", "[Errno 28] No space left on device")] * 2
    assert fake._rule_sync.map.slots[rulesync.APPLIED] == 0  # not acknowledged: editors are not told it is


def test_a_daemon_answering_that_it_failed_makes_the_edit_stored_not_failed(monkeypatch):
    def refused(pin_root: Path, timeout_s: float = 5.0) -> bool:
        raise RuntimeError("the running daemon could not apply it (ERR boom)")

    monkeypatch.setattr(rulesync, "request_sync", refused)
    outcome, reason = rulesync.confirm(FakeSyncMap(), 1, Path("/nonexistent"), timeout_s=0.1)
    assert outcome is rulesync.Outcome.STORED and "ERR boom" in reason


@pytest.mark.parametrize("alive", [True, False])
def test_an_unacknowledged_edit_is_stored_with_the_reason(monkeypatch, alive):
    monkeypatch.setattr(rulesync, "request_sync", lambda pin_root, timeout_s=5.0: True)
    m = FakeSyncMap()
    if not alive:
        m.lookup_elem = lambda key: 0 if key == rulesync.HEARTBEAT_NS else m.slots[key]  # type: ignore[method-assign]
    outcome, reason = rulesync.confirm(m, 1, Path("/nonexistent"), timeout_s=0.1)
    assert outcome is rulesync.Outcome.STORED
    assert reason == ("the running daemon did not confirm it within 0.1 s" if alive else "")
