"""Rules the policy writes straight into the pinned maps, enforced by fanotify end to end: cgroup-scoped
inode rules (``deny_cgroup_inode``, docs/policy.md "Cgroup-scoped rules on the host") and ``dev:ino`` rules
with no path on record (found by inode number, pybpfguard/agent/handlestore.py ``reopen_by_number``)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybpfguard.agent.file_guard import EnforceSignal, FileGuard, MarkFlag, Mode
from pybpfguard.agent.guard_adapter import GuardAdapter, PinnedRules, RuleSetChanging
from pybpfguard.agent.maps import CGROUP_INODE_KEY, DENY_ALWAYS, INODE_KEY, PinnedMaps
from pybpfguard.agent.paths import InodeKey, inode_key
from pybpfguard.agent.rulesync import GENERATION, bump_generation
from pybpfguard.agent.statefiles import DenyDb, DenyDbEntry

from .conftest import GuardFactory, child_errno, in_cgroup, take

pytestmark = pytest.mark.kernel


def _file(tmp_path: Path, name: str) -> tuple[Path, InodeKey]:
    path = tmp_path / name
    path.write_bytes(b"s3cret")
    return path, inode_key(os.stat(path))


def _deny(pins: PinnedMaps, key: InodeKey) -> None:
    pins.deny_inode.update_elem(INODE_KEY.value(ino=key[0], dev=key[1], pad=0), DENY_ALWAYS)


def _deny_to(pins: PinnedMaps, cgroup: Path, key: InodeKey) -> None:
    cgid = os.stat(cgroup).st_ino
    pins.deny_cgroup_inode.update_elem(CGROUP_INODE_KEY.value(cgid=cgid, ino=key[0], dev=key[1], pad=0), 1)


def _record(db: DenyDb, path: Path, key: InodeKey) -> None:
    db.add(DenyDbEntry(key[1], key[0], os.fsencode(path)))


def _guard(pins: PinnedMaps, db: DenyDb) -> FileGuard:
    rules = PinnedRules(pins, db)
    return FileGuard(rules, reopen=rules.reopen, mode=Mode.ENFORCE, enforce_signal=EnforceSignal.NONE)


def test_cgroup_rule_denies_its_cgroup_only_and_allow_cgroup_does_not_exempt_it(
        pins: PinnedMaps, deny_db: DenyDb, tmp_path: Path, two_cgroups: tuple[Path, Path]) -> None:
    a, b = two_cgroups
    secret, key = _file(tmp_path, "secret")
    _record(deny_db, secret, key)
    _deny_to(pins, a, key)
    with _guard(pins, deny_db) as guard:
        assert guard.coverage() == (1, {})
        assert child_errno("open", str(secret), prefix=in_cgroup(a)) == errno.EPERM
        assert child_errno("open", str(secret), prefix=in_cgroup(b)) == 0
        assert child_errno("open", str(secret)) == 0  # the test's own cgroup
        pins.allow_cgroup.update_elem(os.stat(a).st_ino, 1)
        guard.refresh()
        assert child_errno("open", str(secret), prefix=in_cgroup(a)) == errno.EPERM
        d1, d2 = take(guard, 2)
        assert {d1.cgid, d2.cgid} == {os.stat(a).st_ino} and (d1.ino, d1.dev) == key
        stats = guard.stats()
        assert (stats.denied, stats.allowed_cgroup) == (2, 0)
        assert not guard.errors


def test_global_and_cgroup_rule_on_one_inode_under_allow_cgroup(pins: PinnedMaps, deny_db: DenyDb, tmp_path: Path,
                                                                two_cgroups: tuple[Path, Path]) -> None:
    """A is exempt from the global rule but not from its own cgroup rule; B is exempt from the global rule."""
    a, b = two_cgroups
    secret, key = _file(tmp_path, "secret")
    _record(deny_db, secret, key)
    _deny(pins, key)
    _deny_to(pins, a, key)
    for cg in (a, b):
        pins.allow_cgroup.update_elem(os.stat(cg).st_ino, 1)
    with _guard(pins, deny_db) as guard:
        assert child_errno("open", str(secret), prefix=in_cgroup(a)) == errno.EPERM
        assert child_errno("open", str(secret), prefix=in_cgroup(b)) == 0
        assert child_errno("open", str(secret)) == errno.EPERM
        assert guard.stats().allowed_cgroup == 1


@pytest.mark.parametrize("scope", ["global", "cgroup"])
def test_dev_ino_rule_without_a_path_is_found_by_inode_number_and_enforced(
        pins: PinnedMaps, deny_db: DenyDb, tmp_path: Path, test_cgroup: Path, scope: str) -> None:
    """``[deny_inode]``/``[cgroup_deny_inode]`` give only dev:ino: no deny.db line, no file handle recorded."""
    secret, key = _file(tmp_path, "secret")
    if scope == "global":
        _deny(pins, key)
    else:
        _deny_to(pins, test_cgroup, key)
    with _guard(pins, deny_db) as guard:
        assert guard.coverage() == (1, {})
        assert child_errno("open", str(secret), prefix=in_cgroup(test_cgroup)) == errno.EPERM
        assert child_errno("open", str(secret)) == (errno.EPERM if scope == "global" else 0)
        # the mark goes when the rule does, found by number again
        rule_map = pins.deny_inode if scope == "global" else pins.deny_cgroup_inode
        for k in list(rule_map.keys()):
            rule_map.delete_elem(k)
        result = guard.refresh()
        assert result.removed == (key,) and guard.coverage() == (0, {})
        assert child_errno("open", str(secret), prefix=in_cgroup(test_cgroup)) == 0


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "pybpfguard-test", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_dev_ino_rule_without_a_path_on_tmpfs_is_reported_not_enforced(pins: PinnedMaps, deny_db: DenyDb,
                                                                       tmpfs: Path) -> None:
    """tmpfs cannot open an inode by number alone (its handles carry the generation): No-Pretend."""
    _, key = _file(tmpfs, "secret")
    _deny(pins, key)
    with _guard(pins, deny_db) as guard:
        marked, unmarked = guard.coverage()
        assert marked == 0 and list(unmarked) == [key]
        assert "no path recorded for this inode" in unmarked[key] and "inode by number" in unmarked[key]


def test_sync_marks_the_new_set_before_it_unmarks_the_old(make_guard: GuardFactory, tmp_path: Path) -> None:
    guard, rules = make_guard()
    old, new, shared = (_file(tmp_path, n)[0] for n in ("old", "new", "shared"))
    old_key, shared_key = rules.add(str(old)), rules.add(str(shared))
    guard.refresh()
    rules.remove(old_key)
    new_key = rules.add(str(new))
    ops: list[tuple[MarkFlag, InodeKey]] = []
    real = guard._mark

    def spy(group, op, key, path):  # type: ignore[no-untyped-def]
        ops.append((op, key))
        return real(group, op, key, path)

    guard._mark = spy  # type: ignore[method-assign]
    result = guard.refresh()
    assert ops == [(MarkFlag.FAN_MARK_ADD, new_key), (MarkFlag.FAN_MARK_REMOVE, old_key)]  # shared: untouched
    assert (result.added, result.removed) == ((new_key,), (old_key,))
    assert child_errno("open", str(shared)) == errno.EPERM and child_errno("open", str(old)) == 0
    assert shared_key in guard.stats().per_inode


# -- PinnedRules reads the live set between two equal generations -----------------------------------------


def _bumping_refresh(pins: PinnedMaps, times: int) -> None:
    """Make the next *times* reads of the live set see the generation move (a policy apply under way)."""
    real = pins.refresh_live
    left = [times]

    def refresh_live():  # type: ignore[no-untyped-def]
        if left[0] > 0:
            left[0] -= 1
            bump_generation(pins.rule_sync)
        return real()

    pins.refresh_live = refresh_live  # type: ignore[method-assign]


def test_pinned_rules_retry_while_the_generation_moves_then_read_the_switched_set(
        pins: PinnedMaps, deny_db: DenyDb, tmp_path: Path) -> None:
    _, key = _file(tmp_path, "secret")
    idle = pins.sets[1]
    idle.deny_inode.update_elem(INODE_KEY.value(ino=key[0], dev=key[1], pad=0), DENY_ALWAYS)
    pins.switch_to(1)
    pins.switch_to(0)  # the reader must not trust the attribute: it re-reads the selector
    pins.rule_set.update_elem(0, 1)
    rules = PinnedRules(pins, deny_db)
    _bumping_refresh(pins, 2)
    assert rules.deny_inodes() == {key: DENY_ALWAYS}
    assert rules.read_error is None and pins.rule_sync.lookup_elem(GENERATION) == 2


def test_pinned_rules_keep_the_last_good_read_while_the_set_keeps_changing(pins: PinnedMaps, deny_db: DenyDb,
                                                                           tmp_path: Path) -> None:
    _, key = _file(tmp_path, "secret")
    _deny(pins, key)
    rules = PinnedRules(pins, deny_db)
    _bumping_refresh(pins, PinnedRules.READ_ATTEMPTS)
    first = rules.deny_inodes()  # start-up: nothing read before, so the last read is used, and said so
    assert first == {key: DENY_ALWAYS} and rules.read_error is not None
    assert rules.deny_inodes() == first and rules.read_error is None
    _bumping_refresh(pins, PinnedRules.READ_ATTEMPTS)
    with pytest.raises(RuleSetChanging, match="read before stay enforced"):
        rules.deny_inodes()
    assert rules.allow_cgroups() == frozenset() and rules.deny_inodes() == first


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def error(self, msg: str, **_: object) -> None:
        self.lines.append(("error", msg))

    def warn(self, msg: str, **_: object) -> None:
        self.lines.append(("warn", msg))


def test_adapter_resync_leaves_a_changing_set_unacknowledged_except_at_start_up(pins: PinnedMaps, deny_db: DenyDb,
                                                                                tmp_path: Path) -> None:
    """The daemon acknowledges a generation only when resync returns: a read that never settled must raise,
    except at its first resync (no editor waits for a daemon that has not beaten yet)."""
    path, key = _file(tmp_path, "secret")
    _record(deny_db, path, key)
    _deny(pins, key)
    adapter = GuardAdapter.__new__(GuardAdapter)  # the daemon's plumbing (procs, decoder) is not needed here
    adapter.pins, adapter.log, adapter.rules = pins, _Log(), PinnedRules(pins, deny_db)
    adapter.guard = FileGuard(adapter.rules, mode=Mode.ENFORCE, enforce_signal=EnforceSignal.NONE)
    adapter._resynced = False
    with adapter.guard:
        _bumping_refresh(pins, PinnedRules.READ_ATTEMPTS)
        assert adapter.resync() == {}  # start-up: the rules the guard read at start stay marked
        assert adapter.log.lines[0][0] == "error"
        _bumping_refresh(pins, PinnedRules.READ_ATTEMPTS)
        with pytest.raises(RuleSetChanging):
            adapter.resync()
        assert adapter.guard.coverage() == (1, {})
        assert child_errno("open", str(path)) == errno.EPERM


_LEADER_GONE_C = r"""
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static const char *path;
static void *opener(void *unused) {
    usleep(200000); /* the thread group leader has exited by now: a zombie until this thread ends */
    int fd = open(path, O_RDONLY);
    printf("{\"pid\": %d, \"errno\": %d}\n", getpid(), fd < 0 ? errno : 0);
    fflush(stdout);
    return unused;
}
int main(int argc, char **argv) {
    pthread_t t;
    path = argv[1];
    pthread_create(&t, 0, opener, 0);
    pthread_exit(0);
}
"""


@pytest.fixture
def leader_gone(tmp_path: Path) -> Path:
    """A program whose main thread exits at once while a second thread opens argv[1] and prints its errno."""
    cc = shutil.which("clang-19") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    src, exe = tmp_path / "leader_gone.c", tmp_path / "leader_gone"
    src.write_text(_LEADER_GONE_C)
    subprocess.run([cc, "-O2", "-pthread", "-o", str(exe), str(src)], check=True)
    return exe


def test_cgroup_rule_holds_for_a_thread_whose_leader_exited(pins: PinnedMaps, deny_db: DenyDb, tmp_path: Path,
                                                             two_cgroups: tuple[Path, Path], leader_gone: Path) -> None:
    """fanotify names the thread group, and the guard reads /proc/<tgid>/cgroup: a leader that exited (a
    zombie while another thread runs) must not make the opener's cgroup "unknown" (no cgroup rule matches)."""
    a, _ = two_cgroups
    secret, key = _file(tmp_path, "secret")
    _record(deny_db, secret, key)
    _deny_to(pins, a, key)
    with _guard(pins, deny_db):
        proc = subprocess.run([*in_cgroup(a), str(leader_gone), str(secret)], capture_output=True, text=True,
                              timeout=20)
    assert json.loads(proc.stdout)["errno"] == errno.EPERM, proc
