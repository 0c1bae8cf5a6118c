"""ExecGuard against the real kernel: deny_comm and allowlist mode through fanotify filesystem marks.

Safety on a shared host: only filesystems holding the test's own binaries are marked (``mount_filter``),
every deny_comm name is unique to the test, and in allowlist mode every cgroup but the test's child cgroup
is exempt (``AllBut``), so no other process's exec is ever denied; the guard runs only inside ``with``.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pybpfguard.agent.decision import AllowReason, Mode, RuleKind, Verdict
from pybpfguard.agent.events.model import Action
from pybpfguard.agent.exec_guard import UNSEEN_EXECS, UNSEEN_REASON, ExecGuard, exec_capable
from pybpfguard.agent.execdecision import ExecRules
from pybpfguard.agent.mountinfo import MountEntry
from pybpfguard.agent.options import EnforceSignal
from pybpfguard.agent.paths import InodeKey, inode_key, kernel_dev
from pybpfguard.agent.survival import survival_inodes
from tests.exec_decision_table import EXEC_CASES, AllBut, ExecCase

pytestmark = pytest.mark.kernel

EVERYONE = AllBut(-1)  # every cgroup is exempt


def exec_errno(path: Path, cgroup: Path | None = None) -> int:
    """execve *path* in a child (moved into *cgroup* first, when given): 0 when it ran and exited 0, else
    the errno execve failed with."""

    def enter() -> None:
        if cgroup is not None:
            with open(cgroup / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))

    try:
        proc = subprocess.run([str(path)], preexec_fn=enter, capture_output=True, timeout=20)
    except OSError as err:
        return err.errno or -1
    assert proc.returncode == 0, proc
    return 0


def unique_binary(where: Path, prefix: str = "pbg") -> Path:
    """A copy of /bin/true under a name no other process uses (<= 15 bytes, so deny_comm can name it)."""
    path = where / f"{prefix}-{uuid.uuid4().hex[:8]}"
    shutil.copy2(os.path.realpath("/bin/true"), path)
    path.chmod(0o755)
    return path


def cgid_of(cgroup: Path) -> int:
    return os.stat(cgroup).st_ino


def only_filesystems_of(*paths: Path) -> Callable[[MountEntry], bool]:
    devs = {kernel_dev(os.stat(p).st_dev) for p in paths}
    return lambda m: m.dev in devs


@pytest.fixture
def binaries(tmp_path: Path) -> tuple[Path, Path]:
    return unique_binary(tmp_path), unique_binary(tmp_path)


@pytest.fixture
def guard_factory(kernel: None) -> Iterator[Callable[..., ExecGuard]]:
    """``make(rules_or_source, mode, **kw)`` -> an unstarted ExecGuard limited to the filesystems of the test's
    binaries, /bin/true and the dynamic loader; every guard made is stopped at teardown, and must have
    seen no error."""
    made: list[ExecGuard] = []

    def make(rules: ExecRules | Callable[[], ExecRules], mode: Mode = Mode.ENFORCE, *paths: Path,
             **kw: object) -> ExecGuard:
        source = rules if callable(rules) else (lambda: rules)
        kw.setdefault("mount_filter", only_filesystems_of(Path("/tmp"), *paths, Path(os.path.realpath("/bin/true")),
                                                          Path("/lib64/ld-linux-x86-64.so.2")))
        g = ExecGuard(source, mode=mode, enforce_signal=EnforceSignal.NONE, **kw)  # type: ignore[arg-type]
        made.append(g)
        return g

    yield make
    for g in made:
        g.stop()
        assert not g.errors, g.errors


def key_of(path: Path) -> InodeKey:
    return inode_key(os.stat(path))


def test_deny_comm_denies_the_named_binary_in_enforce_and_lets_others_run(guard_factory, binaries, test_cgroup):
    denied, other = binaries
    rules = ExecRules(deny_comm=frozenset({os.fsencode(denied.name)}))
    with guard_factory(rules, Mode.ENFORCE) as guard:
        assert guard.running and guard.coverage().marked
        assert exec_errno(denied, test_cgroup) == errno.EPERM
        assert exec_errno(other, test_cgroup) == 0
        assert exec_errno(Path("/bin/true"), test_cgroup) == 0
        block = guard.decisions.get(timeout=5)
        stats = guard.stats()
    assert guard.decisions.empty()
    assert block.rule is RuleKind.DENY_COMM and block.name == os.fsencode(denied.name)
    d = block.block
    assert (d.ino, d.dev, d.path, d.exec, d.action) == (0, 0, os.fsencode(denied), True, Action.BLOCK)
    assert d.cgid == cgid_of(test_cgroup)
    assert (stats.blocks, stats.denied, stats.per_rule) == (1, 1, {RuleKind.DENY_COMM: 1})
    assert stats.interpreters >= 2  # the dynamic loader of each allowed copy of true passed with its exec
    assert not guard.running
    assert exec_errno(denied, test_cgroup) == 0  # stopped: fail-open


def test_deny_comm_in_audit_reports_and_allows(guard_factory, binaries, test_cgroup):
    denied, _ = binaries
    with guard_factory(ExecRules(deny_comm=frozenset({os.fsencode(denied.name)})), Mode.AUDIT) as guard:
        assert exec_errno(denied, test_cgroup) == 0
        block = guard.decisions.get(timeout=5)
    assert block.block.action is Action.AUDIT and guard.stats().audited == 1


def test_deny_comm_matches_the_resolved_name_not_the_symlink_name(guard_factory, binaries, tmp_path, test_cgroup):
    """The difference from bprm_check_security (which sees the name passed to execve): see exec_guard.py."""
    denied, other = binaries
    alias_of_denied = tmp_path / "innocent"
    alias_of_denied.symlink_to(denied)
    named_like_denied = tmp_path / "links" / denied.name
    named_like_denied.parent.mkdir()
    named_like_denied.symlink_to(other)
    with guard_factory(ExecRules(deny_comm=frozenset({os.fsencode(denied.name)})), Mode.ENFORCE):
        assert exec_errno(alias_of_denied, test_cgroup) == errno.EPERM
        assert exec_errno(named_like_denied, test_cgroup) == 0


def test_allowlist_denies_an_unlisted_binary_while_an_exempt_cgroup_runs_it(guard_factory, binaries, test_cgroup):
    unlisted, listed = binaries
    rules = ExecRules(allow_exec=frozenset({key_of(listed)}), allowlist=True,
                      allow_cgroups=AllBut(cgid_of(test_cgroup)), survival=frozenset(survival_inodes()))
    with guard_factory(rules, Mode.ENFORCE) as guard:
        assert exec_errno(listed, test_cgroup) == 0  # its dynamic loader is not listed, and need not be
        assert exec_errno(unlisted, test_cgroup) == errno.EPERM
        assert exec_errno(unlisted) == 0  # the test's own cgroup is exempt
        block = guard.decisions.get(timeout=5)
        stats = guard.stats()
    assert block.rule is RuleKind.NOT_ALLOWLISTED and block.block.action is Action.BLOCK
    assert (block.block.ino, block.block.dev) == key_of(unlisted)
    assert stats.denied == 1 and stats.allowed_cgroup >= 1


@pytest.mark.parametrize("case", EXEC_CASES, ids=lambda c: c.name)
def test_fanotify_exec_tier_decides_every_case_of_the_table(guard_factory, tmp_path, test_cgroup, case: ExecCase):
    target = unique_binary(tmp_path)
    child = cgid_of(test_cgroup)
    want = case.rules(key_of(target), os.fsencode(target.name), child)
    # only the child's cgroup is ever decided without exemption (see the module docstring)
    rules = dataclasses.replace(want, allow_cgroups=EVERYONE if case.cgroup_allowed else AllBut(child))
    with guard_factory(rules, case.mode) as guard:
        got = exec_errno(target, test_cgroup)
        stats = guard.stats()
    assert got == (errno.EPERM if case.expect is Verdict.DENY else 0)
    if case.expect is Verdict.ALLOW:
        assert stats.blocks == 0 and guard.decisions.empty()
        assert stats.allowed_survival == (case.reason is AllowReason.SURVIVAL)
        assert stats.allowed_cgroup >= (case.reason is AllowReason.ALLOW_CGROUP)
    else:
        block = guard.decisions.get(timeout=5)
        assert block.rule is case.rule
        assert block.block.action is (Action.AUDIT if case.expect is Verdict.AUDIT else Action.BLOCK)


def test_the_group_is_held_only_while_a_rule_is_active(guard_factory, binaries, test_cgroup):
    denied, _ = binaries
    current = [ExecRules()]
    guard = guard_factory(lambda: current[0], Mode.ENFORCE)
    guard.start()
    assert not guard.running and guard.coverage().marked == {}
    current[0] = ExecRules(deny_comm=frozenset({os.fsencode(denied.name)}))
    assert guard.refresh().marked and guard.running
    assert exec_errno(denied, test_cgroup) == errno.EPERM
    current[0] = ExecRules()
    assert guard.refresh().marked == {} and not guard.running
    assert exec_errno(denied, test_cgroup) == 0


def test_a_filesystem_mounted_while_running_gets_marked(guard_factory, tmp_path, test_cgroup):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    name = f"pbg-{uuid.uuid4().hex[:8]}"
    base = only_filesystems_of(Path("/tmp"), Path(os.path.realpath("/bin/true")))
    rules = ExecRules(deny_comm=frozenset({os.fsencode(name)}))
    with guard_factory(rules, Mode.ENFORCE, mount_filter=lambda m: base(m) or m.mount_point == os.fsencode(mnt)) \
            as guard:
        assert os.fsencode(mnt) not in guard.coverage().marked.values()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=755", "pbg-exec-test", str(mnt)], check=True)
        try:
            binary = mnt / name
            shutil.copy2(os.path.realpath("/bin/true"), binary)
            for _ in range(100):
                if os.fsencode(mnt) in guard.coverage().marked.values():
                    break
                subprocess.run(["sleep", "0.02"], check=True)
            assert os.fsencode(mnt) in guard.coverage().marked.values()
            assert exec_errno(binary, test_cgroup) == errno.EPERM
        finally:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_pseudo_filesystems_are_not_exec_capable():
    assert not exec_capable(MountEntry(1, 5, b"/proc", b"proc"))
    assert not exec_capable(MountEntry(1, 5, b"/sys/fs/cgroup", b"cgroup2"))
    assert exec_capable(MountEntry(1, 5, b"/", b"ext4")) and exec_capable(MountEntry(1, 5, b"/dev/shm", b"tmpfs"))


_ATTACKER = r"""
import ctypes, errno, os, sys
cgroup, how, *args = sys.argv[1:]
with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
libc = ctypes.CDLL(None, use_errno=True)
if how == "memfd":
    fd = os.memfd_create("pbg-memfd", 0)
    with open(args[0], "rb") as src:
        os.write(fd, src.read())
    pid = os.fork()
    if pid == 0:
        try:
            os.execve(fd, [args[0], "true"], {})
        except OSError as err:
            os._exit(100 + err.errno)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
elif how == "loader":
    loader, unlisted = args
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(loader, [loader, unlisted])
        except OSError as err:
            os._exit(100 + err.errno)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
elif how == "e2big-then-loader":
    listed, loader, unlisted = args
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(listed, [listed] + ["x" * 100000] * 400)  # opened (allowed), then refused: E2BIG
        except OSError as err:
            assert err.errno == errno.E2BIG, err
        try:
            os.execv(loader, [loader, unlisted])
        except OSError as err:
            os._exit(100 + err.errno)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def attacker_status(cgroup: Path, how: str, *args: str) -> int:
    """Run the attacker above: it enters *cgroup*, then its child runs an exec the policy should deny. Returns
    the child's exit status: 0 when the denied program ran, 100 + errno when its exec failed."""
    proc = subprocess.run([sys.executable, "-c", _ATTACKER, str(cgroup), how, *args], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc
    return int(proc.stdout.split()[-1])


LOADER = Path("/lib64/ld-linux-x86-64.so.2")


def test_allowlist_reports_the_memfd_execs_it_cannot_deny(guard_factory, binaries, test_cgroup):
    """fexecve of a memfd: the memfd lives on the kernel's internal shmem mount, which the kernel lets no
    filesystem mark reach (SB_NOUSER), so an unlisted static binary run from one is not seen. The guard
    cannot deny it; it must say so (coverage -> the exec_rules_unenforced posture fault), never claim it."""
    _, listed = binaries
    rules = ExecRules(allow_exec=frozenset({key_of(listed)}), allowlist=True,
                      allow_cgroups=AllBut(cgid_of(test_cgroup)), survival=frozenset(survival_inodes()))
    with guard_factory(rules, Mode.ENFORCE) as guard:
        ran = attacker_status(test_cgroup, "memfd", "/bin/busybox") == 0
        unmarked = guard.coverage().unmarked
    assert ran, "the kernel now lets this exec be seen: drop UNSEEN_EXECS for it"
    assert unmarked.get(UNSEEN_EXECS) == UNSEEN_REASON


def test_deny_comm_alone_reports_no_unseen_execs(guard_factory, binaries):
    """A deny_comm name is not a boundary a memfd crosses any more than a rename does (on both tiers): only
    allowlist mode reports the unseen execs."""
    denied, _ = binaries
    with guard_factory(ExecRules(deny_comm=frozenset({os.fsencode(denied.name)})), Mode.AUDIT) as guard:
        assert guard.running and UNSEEN_EXECS not in guard.coverage().unmarked


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="not fixed: the interpreter pass is keyed by pid only; an allowed exec that fails after "
                          "its file was opened (E2BIG) leaves it for the next exec, of ld.so itself")
def test_allowlist_loader_pass_is_not_left_over_by_an_exec_that_failed(guard_factory, binaries, test_cgroup):
    """An allowed exec that fails after its file was opened (E2BIG) must not let the next exec of the
    loader itself (``ld.so ./unlisted``) through as that exec's interpreter."""
    unlisted, listed = binaries
    rules = ExecRules(allow_exec=frozenset({key_of(listed)}), allowlist=True,
                      allow_cgroups=AllBut(cgid_of(test_cgroup)), survival=frozenset(survival_inodes()))
    with guard_factory(rules, Mode.ENFORCE):
        assert attacker_status(test_cgroup, "loader", str(LOADER), str(unlisted)) == 100 + errno.EPERM  # control
        assert attacker_status(test_cgroup, "e2big-then-loader", str(listed), str(LOADER), str(unlisted)) \
            == 100 + errno.EPERM
