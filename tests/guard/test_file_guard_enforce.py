"""FileGuard against the real kernel: fanotify permission marks deny exactly the denied inodes."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pybpfguard.agent.file_guard import (
    Action,
    EnforceSignal,
    FileGuard,
    MemoryRules,
    Mode,
    ProcessIdentity,
)
from pybpfguard.agent.maps import PROTECT_VERIFIED_EXEC
from pybpfguard.agent.paths import inode_key, resolve_rule_path
from pybpfguard.agent.statefiles import DenyDb, DenyDbEntry

from .conftest import OPENER, child_errno, in_cgroup, own_cgid, parse_result, run_child, take

pytestmark = pytest.mark.kernel

MODES = [Mode.ENFORCE, Mode.AUDIT]
EXPECT_ERRNO = {Mode.ENFORCE: errno.EPERM, Mode.AUDIT: 0}
EXPECT_ACTION = {Mode.ENFORCE: Action.BLOCK, Mode.AUDIT: Action.AUDIT}


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"s3cret")
    return path


def test_open_of_denied_file_fails_with_eperm_and_reports_block(make_guard, secret):
    guard, rules = make_guard(Mode.ENFORCE)
    key = rules.add(str(secret))
    guard.refresh()
    proc, out = run_child("open", str(secret))
    assert out == {"errno": errno.EPERM}
    [d] = take(guard, 1)
    assert (d.ino, d.dev) == key == inode_key(os.stat(secret))
    assert d.path == os.fsencode(secret) and d.path_complete
    assert d.action is Action.BLOCK and d.pid == proc.pid and not d.exec
    assert d.identity is not None and d.identity.pid == proc.pid and d.identity.ppid == os.getpid()
    assert d.cgid == own_cgid()
    s = guard.stats()
    assert (s.blocks, s.denied, s.audited, s.per_inode) == (1, 1, 0, {key: 1})


def test_audit_mode_allows_open_and_reports_audit(make_guard, secret):
    guard, rules = make_guard(Mode.AUDIT)
    key = rules.add(str(secret))
    guard.refresh()
    assert child_errno("open", str(secret)) == 0
    [d] = take(guard, 1)
    assert (d.ino, d.dev) == key and d.action is Action.AUDIT and d.path == os.fsencode(secret)
    assert guard.stats().audited == 1


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_other_file_beside_denied_one_is_untouched(make_guard, secret, tmp_path, mode):
    guard, rules = make_guard(mode)
    rules.add(str(secret))
    guard.refresh()
    other = tmp_path / "other"
    other.write_text("fine")
    assert child_errno("open", str(other)) == 0
    assert take(guard, 0) == [] and guard.stats().blocks == 0


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_hardlink_and_rename_of_denied_file_are_denied(make_guard, secret, tmp_path, mode):
    guard, rules = make_guard(mode)
    key = rules.add(str(secret))
    guard.refresh()
    other_dir = tmp_path / "elsewhere"
    other_dir.mkdir()
    link = other_dir / "hardlink"
    os.link(secret, link)
    assert child_errno("open", str(link)) == EXPECT_ERRNO[mode]
    renamed = tmp_path / "renamed"
    secret.rename(renamed)
    assert child_errno("open", str(renamed)) == EXPECT_ERRNO[mode]
    d1, d2 = take(guard, 2)
    assert {(d.ino, d.dev) for d in (d1, d2)} == {key}
    assert (d1.path, d2.path) == (os.fsencode(link), os.fsencode(renamed))
    assert d1.action is d2.action is EXPECT_ACTION[mode]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_bind_mount_of_denied_files_directory_is_denied(make_guard, secret, tmp_path, mode):
    if shutil.which("unshare") is None:
        pytest.fail("unshare(1) is needed for the private mount namespace")
    guard, rules = make_guard(mode)
    key = rules.add(str(secret))
    guard.refresh()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    # The bind mount lives only in the child's private mount namespace and dies with it.
    script = 'mount --bind "$1" "$2" && exec "$3" "$4" open "$5"'
    proc, out = run_child_in_ns(script, secret.parent, mnt, mnt / "secret")
    assert out == {"errno": EXPECT_ERRNO[mode]}, proc.stderr
    [d] = take(guard, 1)
    assert (d.ino, d.dev) == key and d.action is EXPECT_ACTION[mode]
    # d_path of a mount outside the agent's namespace is relative to that mount
    assert d.path.endswith(b"/secret"), d.path


def run_child_in_ns(script, src, dst, target):
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(src), str(dst),
            sys.executable, str(OPENER), os.fsencode(str(target)).hex()]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    return proc, parse_result(proc)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_symlinked_dir_dotdot_and_proc_root_aliases_are_denied_with_real_path(make_guard, secret,
                                                                               tmp_path, mode):
    guard, rules = make_guard(mode)
    rules.add(str(secret))
    guard.refresh()
    sub = tmp_path / "real" / "sub"
    sub.mkdir(parents=True)
    (tmp_path / "link").symlink_to(sub)
    # link/../ resolves through the symlink target: real/sub/.. = real, not tmp_path
    (tmp_path / "real" / "secret").hardlink_to(secret)
    via_symlink = f"{tmp_path}/link/../secret"
    via_proc_root = f"/proc/self/root{secret}"
    assert child_errno("open", via_symlink) == EXPECT_ERRNO[mode]
    assert child_errno("open", via_proc_root) == EXPECT_ERRNO[mode]
    d1, d2 = take(guard, 2)
    assert d1.path == os.fsencode(tmp_path / "real" / "secret")
    assert d2.path == os.fsencode(secret)
    assert d1.action is d2.action is EXPECT_ACTION[mode]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_openat_with_directory_fd_denies_file_actually_opened(make_guard, secret, tmp_path, mode):
    guard, rules = make_guard(mode)
    rules.add(str(secret))
    guard.refresh()
    decoy = tmp_path / "cwd"
    decoy.mkdir()
    (decoy / "secret").write_text("not denied")
    assert child_errno("openat", str(tmp_path), "secret") == EXPECT_ERRNO[mode]
    [d] = take(guard, 1)
    assert d.path == os.fsencode(secret)


@pytest.fixture
def denied_true(tmp_path):
    copy = tmp_path / "bin" / "mytrue"
    copy.parent.mkdir()
    shutil.copy2("/bin/true", copy)
    link = tmp_path / "innocent"
    link.symlink_to(copy)
    return copy, link


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_exec_of_denied_binary_and_through_symlink_is_denied_and_reported_once(make_guard, denied_true,
                                                                               mode):
    copy, link = denied_true
    guard, rules = make_guard(mode)
    key = rules.add(str(copy))
    guard.refresh()
    for target in (copy, link):
        proc, out = run_child("exec", str(target))
        if mode is Mode.ENFORCE:
            assert out == {"errno": errno.EPERM}
        else:
            assert out is None and proc.returncode == 0, proc.stderr  # /bin/true ran, printed nothing
    decisions = take(guard, 2)
    # an allowed execve raises OPEN_EXEC_PERM then OPEN_PERM: one decision per exec either way
    assert len(decisions) == 2, decisions
    for d in decisions:
        assert (d.ino, d.dev) == key and d.exec and d.path == os.fsencode(copy)
        assert d.action is EXPECT_ACTION[mode]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_allow_cgroup_exempts_child_in_test_cgroup(make_guard, secret, test_cgroup, mode):
    guard, rules = make_guard(mode)
    rules.add(str(secret))
    rules.allow.add(os.stat(test_cgroup).st_ino)
    guard.refresh()
    assert child_errno("open", str(secret), prefix=in_cgroup(test_cgroup)) == 0
    assert take(guard, 0) == [] and guard.stats().allowed_cgroup == 1
    # the same open outside the cgroup is not exempt
    assert child_errno("open", str(secret)) == EXPECT_ERRNO[mode]
    [d] = take(guard, 1)
    assert d.cgid != os.stat(test_cgroup).st_ino


def test_survival_inode_is_never_denied(make_guard, secret):
    guard, rules = make_guard(Mode.ENFORCE)
    key = rules.add(str(secret))
    rules.survival_keys.add(key)
    result = guard.refresh()
    assert key not in result.added  # never marked: the survival list always wins
    assert child_errno("open", str(secret)) == 0
    assert take(guard, 0) == []


def test_rules_added_and_removed_while_running_take_effect(make_guard, secret):
    guard, rules = make_guard(Mode.ENFORCE)
    assert child_errno("open", str(secret)) == 0
    key = rules.add(str(secret))
    assert guard.refresh().added == (key,)
    assert child_errno("open", str(secret)) == errno.EPERM
    rules.remove(key)
    assert guard.refresh().removed == (key,)
    assert child_errno("open", str(secret)) == 0
    assert guard.coverage() == (0, {})


def test_denied_inode_without_a_usable_path_is_reported_unenforced(make_guard, secret, tmp_path):
    guard, rules = make_guard(Mode.ENFORCE)
    key = rules.add(str(secret))
    other = tmp_path / "other"
    other.write_text("x")
    rules.paths[key] = os.fsencode(other)  # the recorded path now names another inode
    ghost = (key[0] + 1_000_000, key[1])
    rules.deny[ghost] = 1
    result = guard.refresh()
    assert result.added == ()
    assert set(result.unmarked) == {key, ghost}
    assert "another inode" in result.unmarked[key] and "no path" in result.unmarked[ghost]
    assert guard.coverage() == (0, result.unmarked)


def test_term_signal_kills_opener_and_action_is_term(make_guard, secret):
    guard, rules = make_guard(Mode.ENFORCE, EnforceSignal.TERM)
    rules.add(str(secret))
    guard.refresh()
    proc, out = run_child("open", str(secret))
    assert proc.returncode == -signal.SIGTERM and out is None
    [d] = take(guard, 1)
    assert d.action is Action.TERM


def test_kill_signal_escalates_from_term_to_kill_at_threshold(make_guard, secret):
    guard, rules = make_guard(Mode.ENFORCE, EnforceSignal.KILL, kill_escalation_threshold=5)
    rules.add(str(secret))
    guard.refresh()
    proc, out = run_child("repeat", str(secret), "10")  # ignores SIGTERM
    assert proc.returncode == -signal.SIGKILL and out is None
    actions = [d.action for d in take(guard, 5)]
    assert actions == [Action.TERM] * 4 + [Action.KILL]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_execveat_empty_path_of_denied_binary_is_denied(make_guard, denied_true, mode):
    """Case 8: execveat(fd, "", AT_EMPTY_PATH) on an O_PATH fd decides on the file itself."""
    copy, _ = denied_true
    guard, rules = make_guard(mode)
    key = rules.add(str(copy))
    guard.refresh()
    proc, out = run_child("fexec", str(copy))
    if mode is Mode.ENFORCE:
        assert out == {"errno": errno.EPERM}
    else:
        assert out is None and proc.returncode == 0, proc.stderr
    [d] = take(guard, 1)
    assert (d.ino, d.dev) == key and d.exec and d.path == os.fsencode(copy)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_exec_of_binary_25_directories_deep_is_denied_with_full_path(make_guard, tmp_path, mode):
    """Case 5."""
    deep = tmp_path.joinpath(*(f"level{i:02d}" for i in range(25)))
    deep.mkdir(parents=True)
    binary = deep / "deeptrue"
    shutil.copy2("/bin/true", binary)
    guard, rules = make_guard(mode)
    rules.add(str(binary))
    guard.refresh()
    proc, out = run_child("exec", str(binary))
    assert (out == {"errno": errno.EPERM}) if mode is Mode.ENFORCE else (proc.returncode == 0)
    [d] = take(guard, 1)
    assert d.path == os.fsencode(binary) and d.exec and d.action is EXPECT_ACTION[mode]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_io_uring_openat_of_denied_file_is_denied_for_submitter(make_guard, secret, mode):
    """Case 13: IORING_OP_OPENAT (inline or in an io-wq worker) raises the same permission event;
    fanotify reports the tgid, so the decision names the submitting process."""
    if Path("/proc/sys/kernel/io_uring_disabled").read_text().strip() != "0":
        pytest.fail("io_uring is disabled on this host (kernel.io_uring_disabled)")
    guard, rules = make_guard(mode)
    rules.add(str(secret))
    guard.refresh()
    proc, out = run_child("uring_open", str(secret))
    assert out == {"errno": EXPECT_ERRNO[mode]}, proc.stderr
    [d] = take(guard, 1)
    assert d.pid == proc.pid and d.path == os.fsencode(secret) and d.action is EXPECT_ACTION[mode]


def test_protect_only_rule_allows_verified_exec_process(make_guard, secret):
    """docs/enforcement.md step 5: flags == PROTECT_VERIFIED_EXEC denies only processes that are not VERIFIED_EXEC."""
    verified = {"yes": True}

    def identity(pid):
        return ProcessIdentity(pid, 1, 0, 0, b"opener", verified_exec=verified["yes"])

    guard, rules = make_guard(Mode.ENFORCE, identity=identity)
    rules.add(str(secret), flags=PROTECT_VERIFIED_EXEC)
    guard.refresh()
    assert child_errno("open", str(secret)) == 0
    assert guard.stats().allowed_verified == 1
    verified["yes"] = False
    assert child_errno("open", str(secret)) == errno.EPERM
    [d] = take(guard, 1)
    assert d.identity is not None and d.identity.comm == b"opener"


def test_unexpected_responder_error_fails_open_for_that_event_and_keeps_serving(kernel, secret):
    calls = []

    def flaky_identity(pid):
        calls.append(pid)
        if len(calls) == 1:
            raise RuntimeError("identity source broke")
        return None

    rules = MemoryRules()
    rules.add(str(secret))
    with FileGuard(rules, mode=Mode.ENFORCE, enforce_signal=EnforceSignal.NONE,
                   identity=flaky_identity) as guard:
        assert child_errno("open", str(secret)) == 0  # answered FAN_ALLOW after the error
        assert child_errno("open", str(secret)) == errno.EPERM
        assert guard.running and guard.stats().errors == 1
        assert [type(e) for e in guard.errors] == [RuntimeError]
    assert not guard.running


def test_deny_db_is_the_path_source_for_marks(kernel, secret, tmp_path):
    """The daemon's wiring: inode rules from the rule source, the path to mark from deny.db."""
    resolved = resolve_rule_path(str(secret))
    db = DenyDb(tmp_path / "state" / "deny.db")
    db.add(DenyDbEntry(resolved.dev, resolved.ino, resolved.canonical))
    rules = MemoryRules(deny={resolved.key: 1})  # no paths of its own
    with FileGuard(rules, db, mode=Mode.ENFORCE, enforce_signal=EnforceSignal.NONE) as guard:
        assert guard.coverage() == (1, {})
        assert child_errno("open", str(secret)) == errno.EPERM


def test_rule_removed_after_its_path_vanished_stops_denying(make_guard, secret, tmp_path):
    """The mark cannot be removed by path any more; it stays, but the open is answered ALLOW."""
    guard, rules = make_guard(Mode.ENFORCE)
    key = rules.add(str(secret))
    guard.refresh()
    moved = tmp_path / "moved"
    secret.rename(moved)
    rules.remove(key)
    result = guard.refresh()
    assert result.removed == () and guard.stats().stale_marks == 1
    assert child_errno("open", str(moved)) == 0
    assert take(guard, 0) == []
