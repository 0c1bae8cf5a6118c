"""The fanotify tier end to end against the table of file-decision cases (tests/decision_table.py): a real
FileGuard answers a child's open, and the errno, the reported decision and the counters are the table's.

Also the protect-only rule as policy files will write it: straight into the pinned ``deny_inode`` map (no
``block add``), read by the daemon's rule source (guard_adapter.PinnedRules)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pybpfguard.agent.decision import AllowReason, Verdict
from pybpfguard.agent.file_guard import Action, EnforceSignal, FileGuard, Mode, ProcessIdentity
from pybpfguard.agent.guard_adapter import PinnedRules
from pybpfguard.agent.maps import INODE_KEY, PROTECT_VERIFIED_EXEC, PinnedMaps
from pybpfguard.agent.paths import resolve_rule_path
from pybpfguard.agent.statefiles import DenyDb, DenyDbEntry
from tests.decision_table import CASES, Case

from .conftest import GuardFactory, child_errno, own_cgid, take

pytestmark = pytest.mark.kernel

EXPECT_ERRNO = {Verdict.ALLOW: 0, Verdict.AUDIT: 0, Verdict.DENY: errno.EPERM}


def _identity(verified: bool):  # type: ignore[no-untyped-def]
    def identity(pid: int) -> ProcessIdentity:
        return ProcessIdentity(pid, 1, 0, 0, b"opener", verified_exec=verified)
    return identity


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fanotify_tier_decides_every_case_of_the_table(make_guard: GuardFactory, tmp_path: Path, case: Case) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"x")
    resolved = resolve_rule_path(str(target))
    guard, rules = make_guard(case.mode, enforce_signal=EnforceSignal.NONE,
                              identity=_identity(case.verified_exec))
    want = case.rules(resolved.key, own_cgid())
    rules.deny.update(want.deny)
    rules.paths[resolved.key] = resolved.canonical
    rules.allow.update(want.allow_cgroups)
    rules.survival_keys.update(want.survival)
    rules.cgroup_rules.update(want.cgroup_deny)
    guard.refresh()

    assert child_errno("open", str(target)) == EXPECT_ERRNO[case.expect]
    stats = guard.stats()
    if case.expect is Verdict.ALLOW:
        assert stats.blocks == 0 and guard.decisions.empty()
        assert stats.allowed_cgroup == (case.reason is AllowReason.ALLOW_CGROUP)
        assert stats.allowed_verified == (case.reason is AllowReason.VERIFIED_EXEC)
    else:
        [d] = take(guard, 1)
        assert d.action is (Action.AUDIT if case.expect is Verdict.AUDIT else Action.BLOCK)
        assert (d.ino, d.dev) == resolved.key


@pytest.mark.parametrize("verified, expect", [(False, errno.EPERM), (True, 0)])
def test_protect_only_rule_written_into_the_pinned_map_is_enforced(kernel: None, pins: PinnedMaps, tmp_path: Path,
                                                                   deny_db: DenyDb, verified: bool,
                                                                   expect: int) -> None:
    """Both tiers agree (tests/program/test_decision_bpf.py): an unverified opener is denied, not let through."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"s3cret")
    resolved = resolve_rule_path(str(secret))
    db = deny_db
    db.add(DenyDbEntry(resolved.dev, resolved.ino, resolved.canonical))
    pins.deny_inode.update_elem(INODE_KEY.value(ino=resolved.ino, dev=resolved.dev, pad=0), PROTECT_VERIFIED_EXEC)
    with FileGuard(PinnedRules(pins, db), mode=Mode.ENFORCE, enforce_signal=EnforceSignal.NONE,
                   identity=_identity(verified)) as guard:
        assert guard.coverage() == (1, {})  # marked: enforced, not reported as a gap
        assert child_errno("open", str(secret)) == expect
        stats = guard.stats()
        assert (stats.denied, stats.allowed_verified) == ((0, 1) if verified else (1, 0))
        assert not guard.errors
