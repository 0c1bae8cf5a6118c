"""File and exec enforcement without BPF LSM: fanotify permission marks on exactly the denied inodes.

REFERENCE §6.1 ("Without BPF-LSM"), decision order §3.5, signals and escalation §6.2/§6.3. Each denied
inode gets an inode mark for ``FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM`` (plus ``FAN_ONDIR`` so a denied
directory cannot be opened either); opens of any other file never reach user space. A responder thread
answers each permission event in the §3.5 order (reading a matched file's path first, one readlink, while
the opener's mount namespace is sure to exist) and only then hands the decision record to a bounded
queue: a full queue drops (and counts) the record, it never delays an answer.

Fail-open by construction: when the group closes (``stop()``, or the process dies) the kernel removes
the marks and allows every pending open. The deadman and the metrics report that (§6.1).

Rules come from a :class:`RuleSource` (the daemon plugs in the pinned ``deny_inode``,
``allow_cgroup`` and ``survival_allowlist`` maps; :class:`MemoryRules` is the in-process one), the path
to mark each inode by from a :class:`PathSource` (``statefiles.DenyDb`` reads deny.db).

Threading: the responder thread only needs the GIL and the *identity*/*cgroup_id* callables; those must
never block on anything another thread of the agent may hold while it opens a file (a thread of the
agent opening a denied file waits for this very responder).

Size (about 560 lines, over the 400 of STYLE §10): the engine keeps its value types (Mode,
BlockDecision, ...) and the /proc fallback lookups (ProcReader) here because the ownership list of this
work names one engine module; they split cleanly into ``file_guard_types`` and ``procinfo``.
"""

from __future__ import annotations

import enum
import os
import queue
import select
import signal
import threading
import time
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field
from typing import Protocol

from pybpfguard.agent.cgroups import cgroup2_mount
from pybpfguard.agent.events.model import Action
from pybpfguard.agent.fanotify import FanotifyError, FanotifyGroup, InitFlag, MarkFlag, Mask, Response
from pybpfguard.agent.options import EnforceSignal
from pybpfguard.agent.paths import InodeKey, inode_key, resolve_rule_path

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
DENY_ALWAYS = 1  # deny_inode flag bits, REFERENCE §6.5
PROTECT_VERIFIED_EXEC = 2
_EXEC_PENDING_MAX = 4096


class Mode(enum.Enum):
    """Requested effective mode of the file hooks (§6.2)."""

    AUDIT = "audit"
    ENFORCE = "enforce"


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Who opened: ``pid``/``ppid`` (tgids), ``start_time``/``parent_start_time`` (ns since boot,
    CLOCK_MONOTONIC; from /proc only at clock-tick resolution, the daemon supplies the kernel's own from
    the process-tracking map), ``comm`` (<= 15 bytes), ``verified_exec`` (§3.5 step 5)."""

    pid: int
    ppid: int
    start_time: int
    parent_start_time: int
    comm: bytes
    verified_exec: bool = False


@dataclass(frozen=True, slots=True)
class BlockDecision:
    """One decision on a denied inode, for the event pipeline (a ``block`` event).

    ``path``: the file's path as the kernel resolves the opened file (``d_path``, from the agent's
    root), raw bytes; ``path_complete`` False when it could not be resolved (longer than PATH_MAX):
    ``path`` is then empty, the decision was made anyway. ``dev`` in kernel encoding. ``ts_ns``:
    CLOCK_MONOTONIC ns (the clock of ``bpf_ktime_get_ns``). ``exec``: the open was an execve.
    ``identity`` None when the opener could not be identified."""

    pid: int
    ino: int
    dev: int
    path: bytes
    path_complete: bool
    action: Action
    cgid: int
    ts_ns: int
    exec: bool
    identity: ProcessIdentity | None


@dataclass(slots=True)
class GuardStats:
    """Counters since start. ``blocks``: rule matches reported (``denied`` + ``audited``), as the kernel's
    ``block_stats.blocks``; ``allowed_*``: matches exempted by §3.5 steps 3-5; ``dropped``: decisions
    lost to a full queue (the answer was given regardless); ``lost_answers``: the opener was gone before
    the answer; ``errors``: events answered ALLOW after an unexpected error; ``stale_marks``: marks left
    on inodes that lost their rule (their path was gone; answered ALLOW); ``per_inode``: blocks per key."""

    blocks: int = 0
    denied: int = 0
    audited: int = 0
    allowed_survival: int = 0
    allowed_cgroup: int = 0
    allowed_verified: int = 0
    dropped: int = 0
    lost_answers: int = 0
    errors: int = 0
    stale_marks: int = 0
    per_inode: dict[InodeKey, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What :meth:`FileGuard.sync` changed: keys marked, keys unmarked, and every denied key that is
    not marked with the reason (not enforced)."""

    added: tuple[InodeKey, ...]
    removed: tuple[InodeKey, ...]
    unmarked: dict[InodeKey, str]


def _read_small(path: bytes) -> bytes:
    """One read(2) of a small /proc file (a Python file object costs about 10 us more per read)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


class ProcReader:
    """Default opener lookups from /proc. ``cgroup_id`` maps the ``0::<path>`` line of
    /proc/<pid>/cgroup to ``st_ino`` of that directory under the cgroup2 mount, cached by path (the
    cache is cleared on every rule sync). Used only while the opener is blocked in our wait."""

    def __init__(self) -> None:
        self._mount: bytes | None = None
        self._cgids: dict[bytes, int] = {}
        self._tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")

    def clear_cache(self) -> None:
        self._cgids.clear()

    def cgroup_id(self, pid: int) -> int:
        """cgid of *pid*, 0 when unknown (no such pid, not visible in our PID namespace)."""
        try:
            data = _read_small(b"/proc/%d/cgroup" % pid)
        except OSError:
            return 0  # the process is gone or invisible: no exemption applies
        if data.startswith(b"0::"):
            start = 0
        else:  # hybrid layout: v1 lines first, then the v2 line "0::<path>"
            start = data.find(b"\n0::") + 1
            if start == 0:
                return 0
        end = data.find(b"\n", start)
        rel = data[start + 3 : end if end >= 0 else len(data)]
        cgid = self._cgids.get(rel)
        if cgid is None:
            if self._mount is None:
                self._mount = cgroup2_mount()
            try:
                cgid = os.stat(self._mount + rel).st_ino
            except OSError:
                return 0
            if len(self._cgids) > 4096:
                self._cgids.clear()
            self._cgids[rel] = cgid
        return cgid

    def identity(self, pid: int) -> ProcessIdentity | None:
        """From /proc/<pid>/stat (fields 4 ppid and 22 starttime, proc(5)); None if unreadable."""
        try:
            ppid, start, comm = self._stat(pid)
            parent_start = self._stat(ppid)[1] if ppid > 0 else 0
        except (OSError, ValueError, IndexError):
            return None
        return ProcessIdentity(pid, ppid, start, parent_start, comm)

    def _stat(self, pid: int) -> tuple[int, int, bytes]:
        data = _read_small(b"/proc/%d/stat" % pid)
        lpar, rpar = data.find(b"("), data.rfind(b")")
        rest = data[rpar + 2 :].split()  # rest[0] is field 3 (state)
        return int(rest[1]), int(rest[19]) * self._tick_ns, data[lpar + 1 : rpar]


class RuleSource(Protocol):
    """Where the rules live (the pinned maps in the daemon)."""

    def deny_inodes(self) -> Mapping[InodeKey, int]:
        """``{(ino, dev): flags}``, flags per ``deny_inode`` (1 DENY_ALWAYS, 2 PROTECT_VERIFIED_EXEC)."""
        ...

    def allow_cgroups(self) -> Set[int]:
        """cgids exempt from global rules (``allow_cgroup``)."""
        ...

    def survival(self) -> Set[InodeKey]:
        """Inodes no rule may deny (``survival_allowlist``)."""
        ...


class PathSource(Protocol):
    def deny_paths(self) -> Mapping[InodeKey, bytes]:
        """``{(ino, dev): path}``: the path to mark each denied inode by (deny.db)."""
        ...


@dataclass
class MemoryRules:
    """An in-memory :class:`RuleSource` and :class:`PathSource` (tests, tools)."""

    deny: dict[InodeKey, int] = field(default_factory=dict)
    paths: dict[InodeKey, bytes] = field(default_factory=dict)
    allow: set[int] = field(default_factory=set)
    survival_keys: set[InodeKey] = field(default_factory=set)

    def add(self, path: str | bytes, flags: int = DENY_ALWAYS) -> InodeKey:
        """``block add``: validate, canonicalize and stat *path* (raises PathRuleError); ``deny |= flags``."""
        resolved = resolve_rule_path(path)
        self.deny[resolved.key] = self.deny.get(resolved.key, 0) | flags
        self.paths.setdefault(resolved.key, resolved.canonical)
        return resolved.key

    def remove(self, key: InodeKey) -> None:
        self.deny.pop(key, None)
        self.paths.pop(key, None)

    def deny_inodes(self) -> Mapping[InodeKey, int]:
        return dict(self.deny)

    def deny_paths(self) -> Mapping[InodeKey, bytes]:
        return dict(self.paths)

    def allow_cgroups(self) -> Set[int]:
        return frozenset(self.allow)

    def survival(self) -> Set[InodeKey]:
        return frozenset(self.survival_keys)


@dataclass(frozen=True, slots=True)
class _Rules:
    """One complete rule set; the responder reads one reference, so it never sees half an update."""

    deny: Mapping[InodeKey, int]
    allow: Set[int]
    survival: Set[InodeKey]


class Escalation:
    """TERM -> KILL escalation (§6.3), keyed by (pid, start_time): strikes below *threshold* in a window
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


_SIGNALS = {Action.TERM: signal.SIGTERM, Action.KILL: signal.SIGKILL, Action.INT: signal.SIGINT}
_FIXED_ACTION = {EnforceSignal.NONE: Action.BLOCK, EnforceSignal.TERM: Action.TERM,
                 EnforceSignal.INT: Action.INT}


class FileGuard:
    """The fanotify enforcement engine (a context manager: ``start()`` on enter, ``stop()`` on exit).

    *source* gives the rules, *paths* the path of each denied inode (default: *source* itself when it
    has ``deny_paths``). *identity(pid)* returns the opener's ProcessIdentity or None (default: /proc),
    *cgroup_id(pid)* its cgid or 0 when unknown (default: /proc/<pid>/cgroup through a cache).
    Decisions go to :attr:`decisions` (a ``queue.Queue`` of at most *queue_size* BlockDecision).
    *mode* and *enforce_signal* may be changed while running. Raises FanotifyError from ``start()``
    when the kernel refuses the group (EPERM without CAP_SYS_ADMIN).
    """

    def __init__(self, source: RuleSource, paths: PathSource | None = None, *, mode: Mode = Mode.AUDIT,
                 enforce_signal: EnforceSignal = EnforceSignal.TERM, kill_escalation_threshold: int = 5,
                 kill_escalation_window_s: float = 30.0,
                 identity: Callable[[int], ProcessIdentity | None] | None = None,
                 cgroup_id: Callable[[int], int] | None = None, queue_size: int = 65536) -> None:
        self.source = source
        self.paths: PathSource = paths if paths is not None else source  # type: ignore[assignment]
        self.mode = mode
        self.enforce_signal = enforce_signal
        self.escalation = Escalation(kill_escalation_threshold, kill_escalation_window_s)
        proc = ProcReader()
        self._identity = identity or proc.identity
        self._cgroup_id = cgroup_id or proc.cgroup_id
        self._proc = proc
        self.decisions: queue.Queue[BlockDecision] = queue.Queue(queue_size)
        self._rules = _Rules({}, frozenset(), frozenset())
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
        """Re-read the rule source and the paths and bring the marks up to date (:meth:`sync`)."""
        return self.sync(self.source.deny_inodes(), self.paths.deny_paths(),
                         self.source.allow_cgroups(), self.source.survival())

    def sync(self, deny: Mapping[InodeKey, int], paths: Mapping[InodeKey, bytes],
             allow_cgroups: Set[int] = frozenset(), survival: Set[InodeKey] = frozenset()) -> SyncResult:
        """Make *deny* the live rule set, then mark the inodes that gained a rule and unmark those that
        lost it. An inode is marked through its recorded path, opened ``O_PATH`` (no open event) and
        checked to still be that inode. Survival inodes are never marked (they always win).
        Returns what changed; inodes that could not be marked are in ``unmarked`` with the reason
        (they are not enforced, and :meth:`coverage` says so)."""
        group = self._group
        if group is None:
            raise RuntimeError("FileGuard.sync before start()")
        with self._sync_lock:
            deny = {k: f for k, f in deny.items() if f}
            survival = frozenset(survival)
            # Swap first: a new mark must find its rule; a removed rule must stop denying at once.
            self._rules = _Rules(deny, frozenset(allow_cgroups), survival)
            self._proc.clear_cache()
            want = {k for k in deny if k not in survival}
            added, removed = [], []
            for key in [k for k in self._marked if k not in want]:
                path = self._marked.pop(key)
                if self._mark_by_path(group, MarkFlag.FAN_MARK_REMOVE, key, path) is None:
                    removed.append(key)
                else:
                    self._stale_marks += 1  # left in place: answered ALLOW, since no rule matches
            self._unmarked = {k: r for k, r in self._unmarked.items() if k in want}
            for key in want:
                if key in self._marked:
                    continue
                path = paths.get(key)
                reason = ("no path recorded for this inode" if path is None
                          else self._mark_by_path(group, MarkFlag.FAN_MARK_ADD, key, path))
                if reason is None:
                    self._marked[key] = path  # type: ignore[assignment]
                    self._unmarked.pop(key, None)
                    added.append(key)
                else:
                    self._unmarked[key] = reason
            return SyncResult(tuple(added), tuple(removed), dict(self._unmarked))

    @staticmethod
    def _mark_by_path(group: FanotifyGroup, op: MarkFlag, key: InodeKey, path: bytes) -> str | None:
        """Add or remove the inode mark of *key* through *path*; None on success, else the reason."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as err:
            return f"{os.fsdecode(path)}: {os.strerror(err.errno or 0)}"
        try:
            if inode_key(os.fstat(fd)) != key:
                return f"{os.fsdecode(path)} now names another inode"
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
        stats = self._stats
        if fd < 0:
            return  # FAN_Q_OVERFLOW: not raised with FAN_UNLIMITED_QUEUE, and carries no permission event
        try:
            key = inode_key(os.fstat(fd))
            rules = self._rules
            flags = rules.deny.get(key)
            is_exec = bool(mask & Mask.FAN_OPEN_EXEC_PERM)
            # An allowed execve of a marked file raises OPEN_EXEC_PERM then OPEN_PERM for the same open
            # (fsnotify_open_perm): report it once.
            follow_up = self._exec_pending.pop(pid, None) == key and not is_exec
            if not flags or follow_up:
                group.respond(fd, Response.FAN_ALLOW)
                return
            if key in rules.survival:
                stats.allowed_survival += 1
                group.respond(fd, Response.FAN_ALLOW)
                return
            cgid = self._cgroup_id(pid)
            if cgid in rules.allow:
                stats.allowed_cgroup += 1
                group.respond(fd, Response.FAN_ALLOW)
                return
            # Read while the opener is blocked here: it cannot have exited, its pid not been reused.
            ident = self._identity(pid)
            if flags == PROTECT_VERIFIED_EXEC and ident is not None and ident.verified_exec:
                stats.allowed_verified += 1
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
            if self.mode is Mode.AUDIT:
                action = Action.AUDIT
                stats.audited += 1
                if is_exec:
                    if len(self._exec_pending) >= _EXEC_PENDING_MAX:
                        self._exec_pending.clear()
                    self._exec_pending[pid] = key
                group.respond(fd, Response.FAN_ALLOW)
            else:
                action = self._signal(pid, ident)
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

    def _signal(self, pid: int, ident: ProcessIdentity | None) -> Action:
        """Send the configured signal (§6.2/§6.3) and return the action actually taken."""
        sig = self.enforce_signal
        if sig is EnforceSignal.KILL:
            start = ident.start_time if ident is not None else 0
            action = self.escalation.strike((pid, start), time.monotonic_ns())
        else:
            action = _FIXED_ACTION[sig]
        signum = _SIGNALS.get(action)
        if signum is not None and pid > 0:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass  # ESRCH: killed while waiting for our answer; the action was still taken
        return action
