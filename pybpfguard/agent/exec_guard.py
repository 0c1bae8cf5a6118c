"""Exec rules without BPF LSM: ``[deny_comm]`` and allowlist mode through fanotify filesystem marks.

The file guard (pybpfguard/agent/file_guard.py) marks exactly the denied inodes; these rules name no inode
(a basename, or "every inode but the listed ones"), so every exec must be seen. While the rules returned by
its :data:`ExecRuleSource` are :attr:`~pybpfguard.agent.execdecision.ExecRules.active`, the
:class:`ExecGuard` holds a ``FAN_CLASS_CONTENT`` group with a ``FAN_MARK_FILESYSTEM`` mark for
``FAN_OPEN_EXEC_PERM`` on every filesystem mounted in the agent's mount namespace that can hold an
executable (:func:`exec_capable`), and a responder thread answers each event with
:func:`pybpfguard.agent.execdecision.decide_exec`. No rule: no group, and an exec costs nothing.

What is matched, and how it differs from ``bprm_check_security`` (the BPF LSM tier):

- ``deny_comm`` is matched against the basename of the executable's path as the kernel resolves the opened
  file (readlink of the event fd: every symlink followed), where the LSM tier matches the basename of the
  name the caller passed to execve, before symlinks. A symlink named like a denied binary that points at
  another one is allowed here; the denied binary exec'd through a symlink of another name is denied here.
  An unlinked executable (``fexecve`` of a deleted file) is matched on its name without `` (deleted)``.
- A script raises one event for the script and one for its interpreter; both are decided (the LSM tier
  checks both inodes too, but matches ``deny_comm`` on the script's name both times).
- A dynamic ELF executable raises a second event for its ``PT_INTERP`` (``ld.so``), which the LSM hook never
  sees: the event of that very inode (resolved in the process's root) right after an allowed exec of the
  same process is allowed without a decision (:attr:`ExecGuardStats.interpreters`), so an allowlist need
  not list the dynamic loader.
- Filesystems mounted only in other mount namespaces are not marked (a mark covers every mount of a
  filesystem, wherever it is mounted, but only filesystems visible here can be marked), and the kernel's
  internal mounts (a ``memfd_create`` file run with ``execveat``) cannot be marked at all;
  :meth:`ExecGuard.coverage` lists what is and is not marked, and in allowlist mode, where every unseen
  exec is one that should have been denied, lists :data:`UNSEEN_EXECS` as not enforced. New mounts are marked when
  ``/proc/self/mountinfo`` reports a change (``POLLPRI``).

Threading: the responder needs the GIL to answer, and while a rule is active every exec from a marked
filesystem waits for that answer, also those of the agent's own children. So no thread of the agent may
wait for an exec while holding the GIL: ``os.posix_spawn`` does (measured: it hangs until the process is
killed), and so does ``subprocess`` whenever it picks ``posix_spawn`` (``close_fds=False`` and no
``preexec_fn``, among other conditions); ``subprocess`` on its default fork or vfork path releases the GIL
and is safe. The agent runs no subprocess today.

Fail-open by construction, like the file guard: when the group closes (:meth:`ExecGuard.stop`, the rules
going inactive, or the process dying) the kernel allows every pending exec.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from pybpfguard.agent.decision import AllowReason, Mode, RuleKind, Verdict
from pybpfguard.agent.elfinterp import elf_interpreter, interpreter_key
from pybpfguard.agent.events.model import Action
from pybpfguard.agent.execdecision import ExecRequest, ExecRules, decide_exec, exec_rule
from pybpfguard.agent.fanotify import FanotifyError, FanotifyGroup, MarkFlag, Mask, Response
from pybpfguard.agent.fhandle import name_to_handle_at
from pybpfguard.agent.file_guard import EVENT_F_FLAGS, INIT_FLAGS, Escalation
from pybpfguard.agent.guard_model import BlockDecision, ProcessIdentity, ProcReader
from pybpfguard.agent.mountinfo import MountEntry, read_mountinfo
from pybpfguard.agent.options import EnforceSignal
from pybpfguard.agent.paths import InodeKey, inode_key
from pybpfguard.agent.signalaction import enforce_signal_action

__all__ = ["NO_EXEC_FSTYPES", "UNSEEN_EXECS", "UNSEEN_REASON", "ExecBlock", "ExecCoverage", "ExecGuard",
           "ExecGuardStats", "ExecRuleSource", "exec_capable"]

ExecRuleSource = Callable[[], ExecRules]
"""Returns the current exec rules (the daemon reads the pinned ``deny_comm``, ``allow_exec_inode``,
``allow_cgroup`` and ``survival_allowlist`` maps and the allowlist flag)."""

EXEC_MASK = Mask.FAN_OPEN_EXEC_PERM
#: Filesystem types no executable can be run from (kernel-generated files, control files, pseudo
#: filesystems); every other type is marked, unknown ones included.
NO_EXEC_FSTYPES = frozenset({
    b"proc", b"sysfs", b"cgroup", b"cgroup2", b"devpts", b"mqueue", b"debugfs", b"tracefs", b"securityfs",
    b"bpf", b"pstore", b"configfs", b"fusectl", b"binfmt_misc", b"efivarfs", b"selinuxfs", b"autofs",
    b"rpc_pipefs", b"nsfs", b"nfsd",
})
_PENDING_MAX = 4096
_DELETED = b" (deleted)"
#: The coverage entry of what no mark reaches, reported while allowlist mode is on: the kernel refuses
#: filesystem and mount marks on its internal mounts (``SB_NOUSER``: the shmem mount behind
#: ``memfd_create``), and only filesystems of this mount namespace can be marked, while any user allowed a
#: user namespace can mount a tmpfs of their own. An unlisted executable run from either is never seen.
UNSEEN_EXECS = b"<memfd and mounts of other mount namespaces>"
UNSEEN_REASON = ("no fanotify mark reaches a memfd (memfd_create, then execveat) or a filesystem mounted only "
                 "in another mount namespace (unshare -Urm): allowlist mode cannot deny their execs here")
_UNSEEN_DEV = -1


def exec_capable(mount: MountEntry) -> bool:
    """The filesystem of *mount* can hold a file to execute (its type is not in :data:`NO_EXEC_FSTYPES`)."""
    return mount.fstype not in NO_EXEC_FSTYPES


class ExecBlock(NamedTuple):
    """One exec rule match for the event pipeline: the ``block`` decision (for ``deny_comm`` ino = dev = 0,
    as in the ``bprm_check_security`` record; ``path`` is the executable's resolved path), the ``rule``
    and the basename that was matched (``name``)."""

    block: BlockDecision
    rule: RuleKind
    name: bytes


@dataclass(slots=True)
class ExecGuardStats:
    """Counters since construction: ``blocks`` (``denied`` + ``audited``), ``allowed_survival`` and
    ``allowed_cgroup`` (matches exempted), ``interpreters`` (ELF interpreter opens passed with their exec),
    ``dropped`` (records lost to a full queue), ``lost_answers`` (the caller was gone), ``errors`` (events
    answered ALLOW after an unexpected error), ``per_rule`` (blocks by rule)."""

    blocks: int = 0
    denied: int = 0
    audited: int = 0
    allowed_survival: int = 0
    allowed_cgroup: int = 0
    interpreters: int = 0
    dropped: int = 0
    lost_answers: int = 0
    errors: int = 0
    per_rule: dict[RuleKind, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExecCoverage:
    """Which filesystems are marked: ``marked`` ``{dev: mount point}``; ``unmarked`` ``{mount point:
    reason}`` of exec-capable filesystems that could not be marked (not enforced); ``skipped`` ``{mount
    point: fstype}`` of filesystems no executable runs from (or left out by the guard's mount filter).
    All empty while no rule is active."""

    marked: dict[int, bytes]
    unmarked: dict[bytes, str]
    skipped: dict[bytes, bytes]


def _basename(path: bytes, nlink: int) -> bytes:
    if nlink == 0 and path.endswith(_DELETED):
        path = path[: -len(_DELETED)]
    return path.rpartition(b"/")[2]


class ExecGuard:
    """The fanotify exec engine (a context manager: :meth:`start` on enter, :meth:`stop` on exit).

    *source()* returns the current :class:`ExecRules`; :meth:`refresh` re-reads it (call it after every
    rule change). *identity(pid)* and *cgroup_id(pid)* as for FileGuard (default: /proc); *escalation*
    may be the file guard's, so strikes count across both. *mode* and *enforce_signal* may be changed while
    running. *mount_filter(mount)* restricts the filesystems marked to those it accepts (tests; default:
    every :func:`exec_capable` one). Decisions go to :attr:`decisions` (at most *queue_size*
    :class:`ExecBlock`). Raises FanotifyError from :meth:`refresh` / :meth:`start` when the kernel refuses
    the group while a rule is active (EPERM without CAP_SYS_ADMIN)."""

    def __init__(self, source: ExecRuleSource, *, mode: Mode = Mode.AUDIT,
                 enforce_signal: EnforceSignal = EnforceSignal.TERM, kill_escalation_threshold: int = 5,
                 kill_escalation_window_s: float = 30.0, escalation: Escalation | None = None,
                 identity: Callable[[int], ProcessIdentity | None] | None = None,
                 cgroup_id: Callable[[int], int] | None = None, queue_size: int = 65536,
                 mount_filter: Callable[[MountEntry], bool] | None = None,
                 mountinfo: str = "/proc/self/mountinfo") -> None:
        self.source = source
        self.mode = mode
        self.enforce_signal = enforce_signal
        self.escalation = escalation or Escalation(kill_escalation_threshold, kill_escalation_window_s)
        proc = ProcReader()
        self._proc = proc
        self._identity = identity or proc.identity
        self._cgroup_id = cgroup_id or proc.cgroup_id
        self._mount_filter = mount_filter
        self._mountinfo = mountinfo
        self.decisions: queue.Queue[ExecBlock] = queue.Queue(queue_size)
        self._rules = ExecRules()
        self._stats = ExecGuardStats()
        self._coverage = ExecCoverage({}, {}, {})
        self._interp_pending: dict[int, InodeKey] = {}
        self._group: FanotifyGroup | None = None
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._lock = threading.RLock()  # rules, group and marks change together
        self.errors: list[BaseException] = []  # unexpected responder errors (bounded), for diagnosis

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> ExecGuard:
        """Read the rules and, when one is active, open the group, mark and start answering."""
        self.refresh()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop answering and close the group (pending execs are allowed: fail-open). Idempotent."""
        with self._lock:
            self._close(timeout_s)

    def __enter__(self) -> ExecGuard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while a group is held and answered (False while no rule is active)."""
        return self._thread is not None and self._thread.is_alive()

    # -- rules and marks -------------------------------------------------------------------------
    def refresh(self) -> ExecCoverage:
        """Re-read the rules and make them live: open the group and mark every filesystem when a rule
        became active, close it when none is, re-mark otherwise. Returns :meth:`coverage`."""
        rules = self.source()
        with self._lock:
            self._rules = rules
            self._proc.clear_cache()
            if not rules.active:
                self._close()
                return self.coverage()
            if self._group is None:
                self._open()
            self._mark_filesystems()
            return self.coverage()

    def coverage(self) -> ExecCoverage:
        c = self._coverage
        return ExecCoverage(dict(c.marked), dict(c.unmarked), dict(c.skipped))

    def stats(self) -> ExecGuardStats:
        s = self._stats
        return ExecGuardStats(s.blocks, s.denied, s.audited, s.allowed_survival, s.allowed_cgroup, s.interpreters,
                              s.dropped, s.lost_answers, s.errors, dict(s.per_rule))

    def _open(self) -> None:
        self._group = group = FanotifyGroup(INIT_FLAGS, EVENT_F_FLAGS)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, args=(group, self._wake_r), name="pybpfguard-exec-guard",
                                        daemon=True)
        self._thread.start()

    def _close(self, timeout_s: float = 5.0) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        os.write(self._wake_w, b"x")  # the responder serves only while self._group is its group
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                self.errors.append(TimeoutError(f"exec guard responder still busy after {timeout_s} s"))
        group.close()  # the kernel answers every queued permission event FAN_ALLOW (fanotify_release)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._interp_pending.clear()
        self._coverage = ExecCoverage({}, {}, {})

    def _mark_filesystems(self) -> None:
        """Add the exec mark to every exec-capable filesystem in the mount table (adding it again to a marked
        one changes nothing), through one of its mounts that its mount point really reaches."""
        group = self._group
        if group is None:
            return
        try:
            mounts = read_mountinfo(self._mountinfo)
        except OSError as err:
            self.errors.append(err)
            return
        marked: dict[int, bytes] = {}
        unmarked: dict[int, tuple[bytes, str]] = {}
        skipped: dict[bytes, bytes] = {}
        for m in mounts:
            if not exec_capable(m) or (self._mount_filter is not None and not self._mount_filter(m)):
                skipped[m.mount_point] = m.fstype
                continue
            if m.dev in marked:
                continue
            reason = self._mark(group, m)
            if reason is None:
                marked[m.dev] = m.mount_point
                unmarked.pop(m.dev, None)
            else:
                unmarked.setdefault(m.dev, (m.mount_point, reason))
        if self._rules.allowlist:  # every unlisted exec is a match, also those no mark can see
            unmarked[_UNSEEN_DEV] = (UNSEEN_EXECS, UNSEEN_REASON)
        self._coverage = ExecCoverage(marked, dict(unmarked.values()), skipped)

    @staticmethod
    def _mark(group: FanotifyGroup, mount: MountEntry) -> str | None:
        """Mark the filesystem of *mount* through its mount point; None on success, else why not."""
        try:
            fd = os.open(mount.mount_point, os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as err:
            return os.strerror(err.errno or errno.EIO)
        try:
            try:
                same = name_to_handle_at(fd)[1] == mount.mount_id
            except OSError:  # no file handles on this filesystem: compare the device instead
                same = inode_key(os.fstat(fd))[1] == mount.dev
            if not same:
                return "mount point covered by another mount"
            group.mark(MarkFlag.FAN_MARK_ADD | MarkFlag.FAN_MARK_FILESYSTEM, EXEC_MASK, b"/proc/self/fd/%d" % fd)
        except FanotifyError as err:
            return str(err)
        finally:
            os.close(fd)
        return None

    # -- responder -------------------------------------------------------------------------------
    def _run(self, group: FanotifyGroup, wake_r: int) -> None:
        poller = select.poll()
        poller.register(group.fileno(), select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        try:
            mounts_fd = os.open(self._mountinfo, os.O_RDONLY | os.O_CLOEXEC)
            poller.register(mounts_fd, select.POLLPRI)
        except OSError:
            mounts_fd = -1
        try:
            while self._group is group:
                try:
                    events = group.read()
                except (FanotifyError, ValueError) as err:  # ValueError: closed by _close after a timeout
                    self.errors.append(err)
                    group.close()  # fail open: the kernel allows whatever waits
                    return
                if events:
                    for ev in events:
                        self._answer(group, ev.mask, ev.fd, ev.pid)
                    continue
                if any(fd == mounts_fd for fd, _ in poller.poll()):
                    self._remark(group)
        finally:
            if mounts_fd >= 0:
                os.close(mounts_fd)

    def _remark(self, group: FanotifyGroup) -> None:
        """A mount appeared or went: mark what is new. Never waits for the lock while :meth:`_close` (which
        holds it) waits for this thread."""
        while self._group is group:
            if self._lock.acquire(timeout=0.05):
                try:
                    if self._group is group:
                        self._mark_filesystems()
                finally:
                    self._lock.release()
                return

    def _answer(self, group: FanotifyGroup, mask: int, fd: int, pid: int) -> None:
        if fd < 0:
            return  # FAN_Q_OVERFLOW: not raised with FAN_UNLIMITED_QUEUE
        try:
            self._handle(group, fd, pid)
        except Exception as err:
            # Fail open for this one event and keep serving; answering twice is harmless (ENOENT).
            self._stats.errors += 1
            if len(self.errors) < 100:
                self.errors.append(err)
            with contextlib.suppress(FanotifyError, ValueError):
                group.respond(fd, Response.FAN_ALLOW)
        finally:
            os.close(fd)

    def _handle(self, group: FanotifyGroup, fd: int, pid: int) -> None:
        """Answer one FAN_OPEN_EXEC_PERM event (the order of :mod:`pybpfguard.agent.execdecision`)."""
        st = os.fstat(fd)
        key = inode_key(st)
        if self._interp_pending.pop(pid, None) == key:  # the ELF interpreter of the exec just allowed
            self._stats.interpreters += 1
            group.respond(fd, Response.FAN_ALLOW)
            return
        try:
            path, complete = os.readlink(b"/proc/self/fd/%d" % fd), True
        except OSError:
            path, complete = b"", False  # beyond PATH_MAX: no name to match, the inode still decides
        name = _basename(path, st.st_nlink)
        rules = self._rules
        if exec_rule(rules, key, name) is None:
            self._allow(group, fd, pid)
            return
        cgid = self._cgroup_id(pid)
        decision = decide_exec(rules, ExecRequest(key, name, cgid), self.mode, self.enforce_signal)
        stats = self._stats
        if decision.verdict is Verdict.ALLOW:
            if decision.reason is AllowReason.SURVIVAL:
                stats.allowed_survival += 1
            elif decision.reason is AllowReason.ALLOW_CGROUP:
                stats.allowed_cgroup += 1
            self._allow(group, fd, pid)
            return
        rule = decision.rule
        assert rule is not None
        stats.blocks += 1
        stats.per_rule[rule] = stats.per_rule.get(rule, 0) + 1
        ts_ns = time.monotonic_ns()
        ident = self._identity(pid)
        if decision.verdict is Verdict.AUDIT:
            action = Action.AUDIT
            stats.audited += 1
            self._allow(group, fd, pid)
        else:
            # Signal before answering, as the kernel hooks do: the pid is pinned by the wait.
            action = enforce_signal_action(self.escalation, pid, ident, decision.signal or EnforceSignal.NONE)
            stats.denied += 1
            if not group.respond(fd, Response.FAN_DENY):
                stats.lost_answers += 1
        ino, dev = (0, 0) if rule is RuleKind.DENY_COMM else key
        try:
            self.decisions.put_nowait(ExecBlock(BlockDecision(pid, ino, dev, path, complete, action, cgid, ts_ns,
                                                              True, ident), rule, name))
        except queue.Full:
            stats.dropped += 1

    def _allow(self, group: FanotifyGroup, fd: int, pid: int) -> None:
        """Answer ALLOW; first note the ELF interpreter this exec will open next, to pass its event."""
        try:
            interp = elf_interpreter(fd)
        except OSError:
            interp = None
        if interp is not None:
            key = interpreter_key(pid, interp)
            if key is not None:
                if len(self._interp_pending) >= _PENDING_MAX:
                    self._interp_pending.clear()
                self._interp_pending[pid] = key
        group.respond(fd, Response.FAN_ALLOW)
