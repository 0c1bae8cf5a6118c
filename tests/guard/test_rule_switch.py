"""The host half of the atomic-apply test (docs/policy.md "Cgroup-scoped rules on the host"): rule sets are
switched as ``policy apply`` switches them (fill the idle set, bump the rule_sync generation before and after
one write of ``rule_set``) while a FileGuard follows the generation as the daemon does; a rule both sets
share is never undenied, not for one open."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybpfguard.agent.file_guard import EnforceSignal, FileGuard, Mode
from pybpfguard.agent.guard_adapter import PinnedRules
from pybpfguard.agent.maps import CGROUP_INODE_KEY, DENY_ALWAYS, INODE_KEY, PinnedMaps
from pybpfguard.agent.paths import InodeKey, inode_key
from pybpfguard.agent.rulesync import APPLIED, DaemonSync, bump_generation
from pybpfguard.agent.statefiles import DenyDb, DenyDbEntry
from tests.rule_switch import assert_denied_throughout

from .conftest import child_errno, in_cgroup

pytestmark = pytest.mark.kernel

SWITCHES = 50
APPLY_TIMEOUT_S = 10.0


class Follower:
    """The daemon's part, in a thread: resync the guard whenever the generation moved, then acknowledge it."""

    def __init__(self, guard: FileGuard, sync: DaemonSync) -> None:
        self.guard, self.sync = guard, sync
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.sync.pending():
                    generation = self.sync.generation()
                    self.guard.refresh()
                    self.sync.acknowledge(generation)
            except Exception as err:  # the daemon logs and retries; the test reports it
                self.errors.append(err)
            time.sleep(0.001)

    def __enter__(self) -> Follower:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def pin_root(bpffs: Path) -> Path:
    with PinnedMaps.open(bpffs / "pins"):
        pass
    return bpffs / "pins"


def _files(tmp_path: Path, db: DenyDb, *names: str) -> Iterator[tuple[Path, InodeKey]]:
    for name in names:
        path = tmp_path / name
        path.write_bytes(b"s3cret")
        key = inode_key(os.stat(path))
        db.add(DenyDbEntry(key[1], key[0], os.fsencode(path)))
        yield path, key


@pytest.mark.parametrize("scope", ["global", "cgroup"])
def test_a_rule_both_sets_share_is_never_undenied_across_switches(pin_root: Path, deny_db: DenyDb, tmp_path: Path,
                                                                  test_cgroup: Path, scope: str) -> None:
    (shared, shared_key), (first, first_key), (second, _) = _files(tmp_path, deny_db, "shared", "a", "b")
    cgid = os.stat(test_cgroup).st_ino

    def fill(pins: PinnedMaps, index: int, only: InodeKey) -> None:
        rule_set = pins.sets[index]
        rule_set.clear()
        if scope == "global":
            rule_set.deny_inode.update_elem(INODE_KEY.value(ino=shared_key[0], dev=shared_key[1], pad=0), DENY_ALWAYS)
        else:
            rule_set.deny_cgroup_inode.update_elem(
                CGROUP_INODE_KEY.value(cgid=cgid, ino=shared_key[0], dev=shared_key[1], pad=0), 1)
        rule_set.deny_inode.update_elem(INODE_KEY.value(ino=only[0], dev=only[1], pad=0), DENY_ALWAYS)

    with PinnedMaps.open(pin_root) as writer, PinnedMaps.open(pin_root) as reader:
        fill(writer, 0, first_key)
        rules = PinnedRules(reader, deny_db)
        guard = FileGuard(rules, reopen=rules.reopen, mode=Mode.ENFORCE, enforce_signal=EnforceSignal.NONE)
        with guard, Follower(guard, DaemonSync(reader.rule_sync)) as follower:

            def switch(i: int) -> None:
                """One apply: the new set denies the shared file and one of a/b (alternating)."""
                idle = 1 - writer.live_index()
                bump_generation(writer.rule_sync)
                only, gone = (second, first) if i % 2 == 0 else (first, second)
                fill(writer, idle, inode_key(os.stat(only)))
                writer.switch_to(idle)
                generation = bump_generation(writer.rule_sync)
                deadline = time.monotonic() + APPLY_TIMEOUT_S
                while writer.rule_sync.lookup_elem(APPLIED) < generation:
                    assert time.monotonic() < deadline, f"switch {i} not applied: {follower.errors}"
                    time.sleep(0.001)
                if i % 10 == 9:  # from the moment a switch is in force: the new rule denies, the old one is gone
                    assert child_errno("open", str(only), prefix=in_cgroup(test_cgroup)) == errno.EPERM
                    assert child_errno("open", str(gone), prefix=in_cgroup(test_cgroup)) == 0

            counts = assert_denied_throughout(shared, switch, switches=SWITCHES, cgroup=test_cgroup)
        assert not follower.errors and not guard.errors
        assert guard.stats().denied >= counts["denied"]
        assert writer.rule_sync.lookup_elem(APPLIED) == 2 * SWITCHES
