"""File and exec enforcement without BPF LSM: fanotify permission marks on exactly the denied inodes.

The tier, the decision order and the signals are those of docs/enforcement.md. Each denied inode gets an
inode mark for ``FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM`` (plus ``FAN_ONDIR`` so a denied directory
cannot be opened either); opens of any other file never reach user space. A responder thread
answers each permission event with :func:`pybpfguard.agent.decision.decide_file` (reading a matched file's
path first, one readlink, while the opener's mount namespace is sure to exist) and only then hands the
decision record to a bounded queue: a full queue drops (and counts) the record, it never delays an answer.

Fail-open by construction: when the group closes (``stop()``, or the process dies) the kernel removes
the marks and allows every pending open. The deadman and the metrics report that (docs/enforcement.md).

Rules come from a :class:`RuleSource` (the daemon plugs in the pinned ``deny_inode``, ``allow_cgroup``,
``deny_cgroup_inode`` and ``survival_allowlist`` maps of the live rule set; :class:`MemoryRules` is the
in-process one), the path to mark each inode by from a :class:`PathSource` (``statefiles.DenyDb`` reads
deny.db). An inode with a cgroup-scoped rule is marked like a globally denied one; the decision then
looks at the opener's cgroup.

Threading: the responder thread only needs the GIL and the *identity*/*cgroup_id* callables; those must
never block on anything another thread of the agent may hold while it opens a file (a thread of the
agent opening a denied file waits for this very responder).

The values it exchanges and the rule interfaces live in :mod:`pybpfguard.agent.guard_model`.
"""

from __future__ import annotations

import os
import queue
import select
import threading
import time
from collections.abc import Callable, Mapping, Set

from pybpfguard.agent.decision import (
    RULE_FLAGS,
    AllowReason,
    FileRequest,
    FileRules,
    Operation,
    Verdict,
    decide_file,
)
from pybpfguard.agent.events.model import Action
from pybpfguard.agent.fanotify import FanotifyError, FanotifyGroup, InitFlag, MarkFlag, Mask, Response
from pybpfguard.agent.filetypes import fanotify_gates, unenforceable_reason
from pybpfguard.agent.guard_model import (
    BlockDecision,
    GuardStats,
    MemoryRules,
    Mode,
    PathSource,
    ProcessIdentity,
    ProcReader,
    RuleSource,
    SyncResult,
)
from pybpfguard.agent.options import EnforceSignal
from pybpfguard.agent.paths import InodeKey, inode_key
from pybpfguard.agent.signalaction import enforce_signal_action

__all__ = [
    "Action",
    "BlockDecision",
    "EnforceSignal",
    "Escalation",
    "FileGuard",
    "GuardStats",
    "MemoryRules",
    "Mode",
    "PathSource",
    "ProcReader",
    "ProcessIdentity",
    "RuleSource",
    "SyncResult",
]

MARK_MASK = Mask.FAN_OPEN_PERM | Mask.FAN_OPEN_EXEC_PERM | Mask.FAN_ONDIR
INIT_FLAGS = (InitFlag.FAN_CLASS_CONTENT | InitFlag.FAN_CLOEXEC | InitFlag.FAN_NONBLOCK
              # Perm events are never merged; a bounded queue would drop (= allow) them on overflow.
              | InitFlag.FAN_UNLIMITED_QUEUE | InitFlag.FAN_UNLIMITED_MARKS)
EVENT_F_FLAGS = os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC
_EXEC_PENDING_MAX = 4096


class Escalation:
    """TERM -> KILL escalation (docs/enforcement.md), keyed by (pid, start_time): strikes below *threshold* in a window
    of *window_ns* get SIGTERM, the one reaching it and later ones SIGKILL; a strike after the window
    opens a new one. Bounded to *max_entries* processes (oldest windows forgotten first)."""

    def __init__(self, threshold: int = 5, window_s: float = 30.0, max_entries: int = 65536) -> None:
        self.threshold = threshold
        self.window_ns = int(window_s * 1e9)
        self.max_entries = max_entries
        self._state: dict[tuple[int, int], list[int]] = {}  # key -> [window_start_ns, strikes]

    def strike(self, key: tuple[int, int], now_ns: int) -> Action:
        st = self._state.get(key)
        if st is None or now_ns - st[0] > self.window_ns:
            if st is None and len(self._state) >= self.max_entries:
                self._state.pop(next(iter(self._state)))
            st = self._state[key] = [now_ns, 0]
        st[1] += 1
        return Action.KILL if st[1] >= self.threshold else Action.TERM


_OPERATION = (Operation.OPEN, Operation.EXEC)  # by is_exec
_ALLOW_COUNTER = {AllowReason.SURVIVAL: "allowed_survival", AllowReason.ALLOW_CGROUP: "allowed_cgroup",
                  AllowReason.VERIFIED_EXEC: "allowed_verified"}


class FileGuard:
    """The fanotify enforcement engine (a context manager: ``start()`` on enter, ``stop()`` on exit).

    *source* gives the rules, *paths* the path of each denied inode (default: *source* itself when it
    has ``deny_paths``). *identity(pid)* returns the opener's ProcessIdentity or None (default: /proc),
    *cgroup_id(pid)* its cgid or 0 when unknown (default: /proc/<pid>/cgroup through a cache).
    Decisions go to :attr:`decisions` (a ``queue.Queue`` of at most *queue_size* BlockDecision).
    *reopen(key)* (optional) returns an ``O_PATH`` fd on a denied inode that has no recorded path, or whose
    recorded path is gone or names another inode (the guard closes it), or the reason it cannot (see
    :meth:`_mark`).
    *mode* and *enforce_signal* may be changed while running. Raises FanotifyError from ``start()``
    when the kernel refuses the group (EPERM without CAP_SYS_ADMIN).
    """

    def __init__(self, source: RuleSource, paths: PathSource | None = None, *, mode: Mode = Mode.AUDIT,
                 enforce_signal: EnforceSignal = EnforceSignal.TERM, kill_escalation_threshold: int = 5,
                 kill_escalation_window_s: float = 30.0,
                 identity: Callable[[int], ProcessIdentity | None] | None = None,
                 cgroup_id: Callable[[int], int] | None = None, queue_size: int = 65536,
                 reopen: Callable[[InodeKey], int | str] | None = None) -> None:
        self.source = source
        self.reopen = reopen
        self.paths: PathSource = paths if paths is not None else source  # type: ignore[assignment]
        self.mode = mode
        self.enforce_signal = enforce_signal
        self.escalation = Escalation(kill_escalation_threshold, kill_escalation_window_s)
        proc = ProcReader()
        self._identity = identity or proc.identity
        self._cgroup_id = cgroup_id or proc.cgroup_id
        self._proc = proc
        self.decisions: queue.Queue[BlockDecision] = queue.Queue(queue_size)
        # one complete rule set: the responder reads one reference, so it never sees half an update
        self._rules = FileRules({}, frozenset(), frozenset())
        self._marked: dict[InodeKey, bytes] = {}
        self._unmarked: dict[InodeKey, str] = {}
        self._stale_marks = 0
        self._stats = GuardStats()
        self._per_inode: dict[InodeKey, int] = {}
        self._exec_pending: dict[int, InodeKey] = {}
        self._group: FanotifyGroup | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._stopping = False
        self._sync_lock = threading.Lock()
        self.errors: list[BaseException] = []  # unexpected responder errors (bounded), for diagnosis

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FileGuard:
        """Create the group, mark the current rules (:meth:`refresh`), start the responder thread."""
        self._group = FanotifyGroup(INIT_FLAGS, EVENT_F_FLAGS)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pybpfguard-file-guard", daemon=True)
        self._thread.start()
        try:
            self.refresh()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop answering: join the responder, answer every queued permission event FAN_ALLOW, close
        the group (its marks go with it: fail-open). Idempotent. A responder still busy after
        *timeout_s* (a callback that blocks) is abandoned: the group closes anyway and the kernel
        allows whatever waits, so no opener stays stuck; the responder's late answer fails harmlessly."""
        group, self._group = self._group, None
        if group is None:
            return
        self._stopping = True
        os.write(self._wake_w, b"x")
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                self.errors.append(TimeoutError(f"file guard responder still busy after {timeout_s} s"))
                group.close()
        for ev in ([] if group.fd.closed else group.read(1 << 16)):
            if ev.fd >= 0:
                group.respond(ev.fd, Response.FAN_ALLOW)
                os.close(ev.fd)
        group.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._marked.clear()

    def __enter__(self) -> FileGuard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- rules -----------------------------------------------------------------------------------
    def refresh(self) -> SyncResult:
        """Re-read the rule source and the paths and bring the marks up to date (:meth:`sync`). The source's
        ``deny_inodes()`` is read first (:class:`RuleSource`)."""
        deny = self.source.deny_inodes()
        return self.sync(deny, self.paths.deny_paths(), self.source.allow_cgroups(), self.source.survival(),
                         self.source.cgroup_deny())

    def sync(self, deny: Mapping[InodeKey, int], paths: Mapping[InodeKey, bytes],
             allow_cgroups: Set[int] = frozenset(), survival: Set[InodeKey] = frozenset(),
             cgroup_deny: Set[tuple[int, InodeKey]] = frozenset()) -> SyncResult:
        """Make *deny* (and *cgroup_deny*, ``{(cgid, (ino, dev))}``) the live rule set, then mark the inodes
        that gained a rule and only then unmark those that lost it: an inode ruled before and after keeps its
        mark throughout, and no new rule waits for an old one's removal. An inode with a global or a
        cgroup-scoped rule is marked through its recorded path, opened ``O_PATH`` (no open event) and checked
        to still be that inode. Survival inodes are never marked (they always win).
        Returns what changed; inodes that could not be marked are in ``unmarked`` with the reason
        (they are not enforced, and :meth:`coverage` says so)."""
        group = self._group
        if group is None:
            raise RuntimeError("FileGuard.sync before start()")
        with self._sync_lock:
            deny = {k: f for k, f in deny.items() if f & RULE_FLAGS}  # other bits are no rule (decision.py)
            survival = frozenset(survival)
            cgroup_deny = frozenset(cgroup_deny)
            # Swap first (one reference): a new mark must find its rule; a removed rule must stop denying at once.
            self._rules = FileRules(deny, frozenset(allow_cgroups), survival, cgroup_deny)
            self._proc.clear_cache()
            want = {k for k in deny if k not in survival}
            want.update(k for _, k in cgroup_deny if k not in survival)
            added, removed = [], []
            self._unmarked = {k: r for k, r in self._unmarked.items() if k in want}
            for key in want:
                if key in self._marked:
                    continue
                path = paths.get(key)
                reason = self._mark(group, MarkFlag.FAN_MARK_ADD, key, path)
                if reason is None:
                    self._marked[key] = path or b""
                    self._unmarked.pop(key, None)
                    added.append(key)
                else:
                    self._unmarked[key] = reason
            for key in [k for k in self._marked if k not in want]:
                path = self._marked.pop(key)
                if self._mark(group, MarkFlag.FAN_MARK_REMOVE, key, path) is None:
                    removed.append(key)
                else:
                    self._stale_marks += 1  # left in place: answered ALLOW, since no rule matches
            return SyncResult(tuple(added), tuple(removed), dict(self._unmarked))

    def _mark(self, group: FanotifyGroup, op: MarkFlag, key: InodeKey, path: bytes | None) -> str | None:
        """Add or remove the mark of *key* through its recorded *path*; where that fails (renamed, the name
        unlinked, the name reused by another inode), through the fd :attr:`reopen` gives for the inode
        itself. None on success, else every reason it failed."""
        reason = self._mark_by_path(group, op, key, path) if path else "no path recorded for this inode"
        if reason is None or self.reopen is None:
            return reason
        found = self.reopen(key)
        if isinstance(found, str):
            return f"{reason}; {found}"
        try:
            return self._mark_by_path(group, op, key, b"/proc/self/fd/%d" % found)
        finally:
            os.close(found)

    @staticmethod
    def _mark_by_path(group: FanotifyGroup, op: MarkFlag, key: InodeKey, path: bytes) -> str | None:
        """Add or remove the inode mark of *key* through *path*; None on success, else the reason."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as err:
            return f"{os.fsdecode(path)}: {os.strerror(err.errno or 0)}"
        try:
            st = os.fstat(fd)
            if inode_key(st) != key:
                return f"{os.fsdecode(path)} now names another inode"
            if not fanotify_gates(st.st_mode):  # marked, it would look enforced and never be (No-Pretend)
                return f"{os.fsdecode(path)}: {unenforceable_reason(st.st_mode, bpf_lsm=False)}"
            # fanotify_mark(dirfd, NULL) refuses O_PATH fds; the magic link reaches that very inode.
            group.mark(op | MarkFlag.FAN_MARK_INODE, MARK_MASK, b"/proc/self/fd/%d" % fd)
        except FanotifyError as err:
            return str(err)
        finally:
            os.close(fd)
        return None

    @property
    def running(self) -> bool:
        """True while the responder answers (False before start, after stop, or after a read failure
        that closed the group)."""
        return self._thread is not None and self._thread.is_alive()

    def coverage(self) -> tuple[int, dict[InodeKey, str]]:
        """``(marked inode count, {key: reason} of denied inodes that are NOT enforced)`` for posture."""
        return len(self._marked), dict(self._unmarked)

    def stats(self) -> GuardStats:
        """A snapshot of the counters (``per_inode``: blocks per key)."""
        s = self._stats
        return GuardStats(s.blocks, s.denied, s.audited, s.allowed_survival, s.allowed_cgroup,
                          s.allowed_verified, s.dropped, s.lost_answers, s.errors, self._stale_marks,
                          dict(self._per_inode))

    # -- responder -------------------------------------------------------------------------------
    def _run(self) -> None:
        group = self._group
        assert group is not None
        poller = select.poll()
        poller.register(group.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._stopping:
            try:
                events = group.read()
            except FanotifyError as err:
                # Cannot read events any more: close the group so the kernel allows every waiting
                # open instead of leaving it hung (fail-open, visible as running == False).
                self.errors.append(err)
                group.close()
                return
            if not events:
                poller.poll()
                continue
            for ev in events:
                try:
                    self._handle(group, ev.mask, ev.fd, ev.pid)
                except Exception as err:
                    # Fail open for this one event (as the kernel does when the group closes), keep
                    # serving, and keep the error for diagnosis. Answering twice is harmless (ENOENT).
                    self._stats.errors += 1
                    if len(self.errors) < 100:
                        self.errors.append(err)
                    if ev.fd >= 0:
                        try:
                            group.respond(ev.fd, Response.FAN_ALLOW)
                        except (FanotifyError, ValueError) as again:  # ValueError: stop() closed it
                            self.errors.append(again)

    def _handle(self, group: FanotifyGroup, mask: int, fd: int, pid: int) -> None:
        """Answer one permission event with :func:`decide_file` (the order of :mod:`.decision`)."""
        stats = self._stats
        if fd < 0:
            return  # FAN_Q_OVERFLOW: not raised with FAN_UNLIMITED_QUEUE, and carries no permission event
        try:
            key = inode_key(os.fstat(fd))
            is_exec = bool(mask & Mask.FAN_OPEN_EXEC_PERM)
            # An allowed execve of a marked file raises OPEN_EXEC_PERM then OPEN_PERM for the same open
            # (fsnotify_open_perm): report it once.
            if self._exec_pending.pop(pid, None) == key and not is_exec:
                group.respond(fd, Response.FAN_ALLOW)
                return
            # Only marked inodes raise events, and a marked inode has a rule: the opener is looked up for
            # nearly every event anyway. Read while it is blocked here: it cannot have exited, nor its pid
            # been reused.
            cgid = self._cgroup_id(pid)
            ident = self._identity(pid)
            decision = decide_file(self._rules, FileRequest(key, cgid, ident is not None and ident.verified_exec,
                                                            _OPERATION[is_exec]), self.mode, self.enforce_signal)
            verdict = decision.verdict
            if verdict is Verdict.ALLOW:
                counter = _ALLOW_COUNTER.get(decision.reason)  # type: ignore[arg-type]
                if counter is not None:
                    setattr(stats, counter, getattr(stats, counter) + 1)
                group.respond(fd, Response.FAN_ALLOW)
                return
            stats.blocks += 1
            self._per_inode[key] = self._per_inode.get(key, 0) + 1
            # The path is read while the opener still waits: once answered it may exit, and with it a
            # private mount namespace whose mounts the path runs through (the path then loses its prefix).
            ts_ns = time.monotonic_ns()
            try:
                path, complete = os.readlink(b"/proc/self/fd/%d" % fd), True
            except OSError:
                path, complete = b"", False  # d_path beyond PATH_MAX (ENAMETOOLONG): say so, decide anyway
            if verdict is Verdict.AUDIT:
                action = Action.AUDIT
                stats.audited += 1
                if is_exec:
                    if len(self._exec_pending) >= _EXEC_PENDING_MAX:
                        self._exec_pending.clear()
                    self._exec_pending[pid] = key
                group.respond(fd, Response.FAN_ALLOW)
            else:
                action = self._signal(pid, ident, decision.signal or EnforceSignal.NONE)
                stats.denied += 1
                # Signal before answering, as the kernel hooks do: the pid is pinned by the wait.
                if not group.respond(fd, Response.FAN_DENY):
                    stats.lost_answers += 1  # a fatal signal ended the wait; the open failed anyway
        finally:
            os.close(fd)
        try:
            self.decisions.put_nowait(BlockDecision(pid, key[0], key[1], path, complete, action, cgid,
                                                    ts_ns, is_exec, ident))
        except queue.Full:
            stats.dropped += 1

    def _signal(self, pid: int, ident: ProcessIdentity | None, sig: EnforceSignal) -> Action:
        """Send *sig* (docs/enforcement.md; KILL escalates from TERM) and return the action actually taken."""
        return enforce_signal_action(self.escalation, pid, ident, sig)
