"""The fanotify guard's values and interfaces: who opened (:class:`ProcessIdentity`), what was decided
(:class:`BlockDecision`), counters, where rules come from (:class:`RuleSource`, :class:`PathSource`,
:class:`MemoryRules` for tests) and the /proc fallback for the opener (:class:`ProcReader`).
The engine itself is :mod:`pybpfguard.agent.file_guard`, the decision it applies
:mod:`pybpfguard.agent.decision` (``Mode`` lives there and is re-exported here)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Protocol

from pybpfguard.agent.cgroups import cgroup2_mount
from pybpfguard.agent.decision import Mode
from pybpfguard.agent.events.model import Action
from pybpfguard.agent.maps import DENY_ALWAYS
from pybpfguard.agent.paths import InodeKey, resolve_rule_path

__all__ = ["BlockDecision", "GuardStats", "MemoryRules", "Mode", "PathSource", "ProcReader", "ProcessIdentity",
           "RuleSource", "SyncResult"]


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Who opened: ``pid``/``ppid`` (tgids), ``start_time``/``parent_start_time`` (ns since boot,
    CLOCK_MONOTONIC; from /proc only at clock-tick resolution, the daemon supplies the kernel's own from
    the process-tracking map), ``comm`` (<= 15 bytes), ``verified_exec`` (the protect-only exemption of
    :mod:`pybpfguard.agent.decision`; nothing computes it yet, so it is False on every tier)."""

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
    ``block_stats.blocks``; ``allowed_*``: matches exempted (survival, allow_cgroup, VERIFIED_EXEC:
    :mod:`pybpfguard.agent.decision`); ``dropped``: decisions lost to a full queue (the answer was given
    regardless); ``lost_answers``: the opener was gone before the answer; ``errors``: events answered ALLOW
    after an unexpected error; ``stale_marks``: marks left on inodes that lost their rule (their path was
    gone; answered ALLOW); ``per_inode``: blocks per key."""

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
    """Where the rules live (the pinned maps in the daemon). :meth:`FileGuard.refresh` calls
    :meth:`deny_inodes` first and then the others, so a source that reads one consistent rule set
    (``guard_adapter.PinnedRules``) reads it there and answers the others from that read."""

    def deny_inodes(self) -> Mapping[InodeKey, int]:
        """``{(ino, dev): flags}``, flags per ``deny_inode`` (1 DENY_ALWAYS, 2 PROTECT_VERIFIED_EXEC)."""
        ...

    def cgroup_deny(self) -> Set[tuple[int, InodeKey]]:
        """``{(cgid, (ino, dev))}``: inodes denied to one cgroup only (``deny_cgroup_inode``)."""
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
    cgroup_rules: set[tuple[int, InodeKey]] = field(default_factory=set)

    def add(self, path: str | bytes, flags: int = DENY_ALWAYS) -> InodeKey:
        """``block add``: validate, canonicalize and stat *path* (raises PathRuleError); ``deny |= flags``."""
        resolved = resolve_rule_path(path)
        self.deny[resolved.key] = self.deny.get(resolved.key, 0) | flags
        self.paths.setdefault(resolved.key, resolved.canonical)
        return resolved.key

    def add_cgroup_rule(self, cgid: int, path: str | bytes) -> InodeKey:
        """A ``deny_cgroup_inode`` entry: deny *path*'s inode to cgroup *cgid* only (resolved as :meth:`add`)."""
        resolved = resolve_rule_path(path)
        self.cgroup_rules.add((cgid, resolved.key))
        self.paths.setdefault(resolved.key, resolved.canonical)
        return resolved.key

    def remove(self, key: InodeKey) -> None:
        """Drop every rule on *key* (global and cgroup-scoped) and its path."""
        self.deny.pop(key, None)
        self.paths.pop(key, None)
        self.cgroup_rules = {rule for rule in self.cgroup_rules if rule[1] != key}

    def deny_inodes(self) -> Mapping[InodeKey, int]:
        return dict(self.deny)

    def deny_paths(self) -> Mapping[InodeKey, bytes]:
        return dict(self.paths)

    def allow_cgroups(self) -> Set[int]:
        return frozenset(self.allow)

    def survival(self) -> Set[InodeKey]:
        return frozenset(self.survival_keys)

    def cgroup_deny(self) -> Set[tuple[int, InodeKey]]:
        return frozenset(self.cgroup_rules)
