"""Plugs the fanotify :class:`FileGuard` into the daemon: rules from the pinned maps, identity from the
BPF process table, decisions to ``block`` events (built by the events decoder) and the pinned counters.

One process has one identity whichever path reports it: pid, start times and the parent's come from the
``procs`` map the tracking programs keep (the kernel's ``task->start_time``), never from /proc.
"""

from __future__ import annotations

import contextlib
import os
import queue
import time
from collections.abc import Callable, Mapping, Set
from pathlib import Path
from typing import TypeVar

import msgspec

from pybpfguard.agent import config
from pybpfguard.agent.decision import FileRules
from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.events.decode import RecordDecoder
from pybpfguard.agent.exec_guard import ExecGuard
from pybpfguard.agent.execdecision import ExecRules
from pybpfguard.agent.file_guard import FileGuard, Mode, ProcessIdentity
from pybpfguard.agent.handlestore import HandleDb, HandleError, HandleRecord, handles_path, reopen_by_number
from pybpfguard.agent.handlestore import reopen as reopen_handle
from pybpfguard.agent.logs import Logger
from pybpfguard.agent.maps import PinnedMaps
from pybpfguard.agent.options import RunOptions
from pybpfguard.agent.paths import InodeKey
from pybpfguard.agent.rulesync import GENERATION
from pybpfguard.agent.statefiles import DenyDb, StateFileError
from pybpfguard.agent.trust import UntrustedPathError
from pybpfguard.bpf.errors import BPFError
from pybpfguard.bpf.maps import Map

_DRAIN_MAX = 4096
T = TypeVar("T")


class RuleSetChanging(AgentError, RuntimeError):
    """The live rule set kept changing while it was read (a ``policy apply`` in progress): the rules read
    before stay in force; the daemon leaves the edit unacknowledged and retries."""


def _take(q: queue.Queue[T], limit: int) -> list[T]:
    """Up to *limit* items already in *q*, without waiting."""
    out: list[T] = []
    while len(out) < limit:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            break
    return out


class PinnedRules:
    """RuleSource + PathSource over the pinned maps and deny.db, and :meth:`reopen` over deny.handles.

    The rules are those of the live rule set (``rule_set``, pybpfguard/agent/maps.py), read as one
    consistent set by :meth:`read` (which :meth:`deny_inodes` calls; the other rule accessors answer from
    that read). A deny.db that cannot be read (malformed, or in a location another user could change)
    never stops enforcement: the paths last read stay in use, with those of every line that still parses,
    and :attr:`state_error` says what is wrong (file:line) until a read succeeds again."""

    #: reads of the live set before giving up while ``policy apply`` keeps switching (0.3 s of backoff in all)
    READ_ATTEMPTS = 7

    def __init__(self, pins: PinnedMaps, db: DenyDb) -> None:
        self.pins = pins
        self.db = db
        self.state_error: Exception | None = None
        #: why the last :meth:`read` could not get a consistent set (None when it did)
        self.read_error: str | None = None
        self._rules: FileRules | None = None  # the last set read consistently
        self._exec = ExecRules()  # its exec rules
        self._last_paths: Mapping[InodeKey, bytes] = {}
        self.handles = HandleDb(handles_path(db.path))
        self._records: dict[InodeKey, HandleRecord] = {}

    def read(self) -> FileRules:
        """The live rule set and the survival allowlist, read consistently: rule_sync ``GENERATION``, then the
        ``rule_set`` selector (``PinnedMaps.refresh_live``), the set's ``deny_inode``, ``allow_cgroup`` and
        ``deny_cgroup_inode``, then ``GENERATION`` again; ``policy apply`` bumps it before it rewrites the
        idle set and after it switches, so an unchanged generation means no switch or rewrite overlapped
        the read. Retried (with backoff) while it changes; after :attr:`READ_ATTEMPTS`, raises
        RuleSetChanging when an earlier consistent read exists (it stays in force), else returns the last
        read and says so in :attr:`read_error` (at start-up there is nothing better to enforce).
        Raises BPFError when a map cannot be read."""
        rule_sync = self.pins.rule_sync
        for attempt in range(self.READ_ATTEMPTS):
            before = rule_sync.lookup_elem(GENERATION)
            live = self.pins.refresh_live()
            rules = FileRules({(k.ino, k.dev): flags for k, flags in live.deny_inode.items()},
                              frozenset(live.allow_cgroup),
                              frozenset((k.ino, k.dev) for k in self.pins.survival_allowlist),
                              frozenset((k.cgid, (k.ino, k.dev)) for k in live.deny_cgroup_inode))
            allow_exec, allowlist = live.exec_allowlist()
            exec_rules = ExecRules(deny_comm=live.comm_names(), allow_exec=allow_exec, allowlist=allowlist,
                                   allow_cgroups=rules.allow_cgroups, survival=frozenset(rules.survival))
            if rule_sync.lookup_elem(GENERATION) == before:
                self._rules, self._exec, self.read_error = rules, exec_rules, None
                return rules
            if attempt + 1 < self.READ_ATTEMPTS:
                time.sleep(0.005 * (1 << attempt))
        self.read_error = (f"the live rule set changed during each of {self.READ_ATTEMPTS} reads "
                           "(policy apply in progress)")
        if self._rules is not None:
            raise RuleSetChanging(f"{self.read_error}; the rules read before stay enforced")
        self._rules, self._exec = rules, exec_rules
        return rules

    def exec_rules(self) -> ExecRules:
        """The exec rules (``deny_comm``, allowlist mode) of the set :meth:`read` read last."""
        if self._rules is None:
            self.read()
        return self._exec

    def _current(self) -> FileRules:
        return self._rules if self._rules is not None else self.read()

    def deny_inodes(self) -> Mapping[InodeKey, int]:
        """Reads the live set (:meth:`read`); returns its ``deny_inode`` entries."""
        return self.read().deny

    def allow_cgroups(self) -> Set[int]:
        return self._current().allow_cgroups

    def survival(self) -> Set[InodeKey]:
        return self._current().survival

    def cgroup_deny(self) -> Set[tuple[int, InodeKey]]:
        return self._current().cgroup_deny

    def deny_paths(self) -> Mapping[InodeKey, bytes]:
        # deny.handles too, for :meth:`reopen`; records of removed rules stay in memory, so a mark can still
        # be removed from a renamed file after ``block del``
        with contextlib.suppress(HandleError, OSError):
            self._records.update(self.handles.read())
        bad_lines: list[StateFileError] = []
        try:
            paths = self.db.deny_paths(bad_lines)
        except (UntrustedPathError, OSError) as err:
            self.state_error = err
            return self._last_paths
        if bad_lines:  # every good line still counts; a bad one keeps the path last read for its inode
            self.state_error = bad_lines[0] if len(bad_lines) == 1 else StateFileError(
                bad_lines[0].path, bad_lines[0].line, f"{bad_lines[0].reason} (and {len(bad_lines) - 1} more bad "
                                                      "lines)")
            paths = {**self._last_paths, **paths}
        else:
            self.state_error = None
        self._last_paths = paths
        return paths

    def reopen(self, key: InodeKey) -> int | str:
        """An ``O_PATH`` fd on inode *key* from its recorded file handle, or, with none recorded (a rule given
        as ``dev:ino``), found by its number (:func:`~pybpfguard.agent.handlestore.reopen_by_number`); else
        why there is none."""
        record = self._records.get(key)
        try:
            return reopen_handle(record) if record is not None else reopen_by_number(key)
        except HandleError as err:
            return str(err) if record is not None else f"no file handle recorded for this inode; {err}"


def proc_identity(procs: Map) -> Callable[[int], ProcessIdentity | None]:
    """``identity(pid)`` from the procs map, with comm from /proc (None when the process is unknown)."""

    def identity(pid: int) -> ProcessIdentity | None:
        entry = procs.get(pid)
        if entry is None:
            return None
        comm = b""
        with contextlib.suppress(OSError):  # raw syscalls: this runs before the permission answer
            fd = os.open(f"/proc/{pid}/comm", os.O_RDONLY | os.O_CLOEXEC)
            try:
                comm = os.read(fd, 64).rstrip(b"\n")
            finally:
                os.close(fd)
        return ProcessIdentity(entry.pid, entry.ppid, entry.start_time, entry.parent_start_time, comm)

    return identity


class GuardAdapter:
    """What the daemon holds when fanotify enforces files: ``drain(emit)``, ``resync()``, ``close()``.
    Decisions are drained on every turn of the daemon's loop (at most 100 ms apart)."""

    def __init__(self, pins: PinnedMaps, procs: Map, options: RunOptions, log: Logger, decoder: RecordDecoder,
                 sampled_out: Callable[[], bool]) -> None:
        """*procs*: the process-tracking map (identity); *decoder* builds the events; *sampled_out()* says
        which to leave out (``--event-sample-rate``). Raises OSError (FanotifyError) when fanotify is refused."""
        self.pins = pins
        self.log = log
        self.decoder = decoder
        self.sampled_out = sampled_out
        self.rules = PinnedRules(pins, DenyDb(config.state_file("deny.db")))
        self.guard = FileGuard(
            self.rules,
            reopen=self.rules.reopen,
            mode=Mode.ENFORCE if options.enforce else Mode.AUDIT,
            enforce_signal=options.enforce_signal,
            kill_escalation_threshold=options.kill_escalation_threshold,
            kill_escalation_window_s=options.kill_escalation_window_s,
            identity=proc_identity(procs),
        )
        self.guard.start()
        # deny_comm and allowlist mode: a second group, holding filesystem exec marks only while such a rule
        # is live (pybpfguard/agent/exec_guard.py); it shares the escalation windows and identities
        self.exec_guard = ExecGuard(self.rules.exec_rules, mode=self.guard.mode,
                                    enforce_signal=options.enforce_signal, escalation=self.guard.escalation,
                                    identity=proc_identity(procs))
        self.exec_gaps: dict[bytes, str] = {}  # mount point -> why exec rules are not enforced on its filesystem
        self._resynced = False
        self._blocks_seen = 0
        self._drops_seen = 0

    @property
    def state_fault(self) -> str | None:
        """The posture fault for :attr:`state_error`: ``state_file_unreadable=<file>[:<line>]`` (the file's
        name, so the fault list stays one token per fault), or None."""
        err = self.rules.state_error
        if err is None:
            return None
        if isinstance(err, StateFileError):
            return f"state_file_unreadable={Path(err.path).name}:{err.line}"
        return f"state_file_unreadable={self.rules.db.path.name}"

    @property
    def state_error(self) -> Exception | None:
        """Why deny.db could not be read at the last resync (its last good paths are in use), or None."""
        return self.rules.state_error

    def resync(self) -> Mapping[InodeKey, str]:
        """Re-mark from the rules; returns the denied inodes left unmarked (not enforced), with why.

        Raises RuleSetChanging (the rules read before stay marked) when the live rule set kept changing, so
        the daemon leaves the edit unacknowledged and retries, except at the daemon's first resync: no
        editor waits for a daemon that has not beaten yet, and starting with the rules the guard read a
        moment before beats not starting."""
        first, self._resynced = not self._resynced, True
        try:
            result = self.guard.refresh()
        except RuleSetChanging as err:
            self.log.error("cannot read the live rule set; enforcing the rules read before", error=str(err))
            if first:
                return self.guard.coverage()[1]
            raise
        if self.rules.read_error is not None:
            self.log.warn("the live rule set changed while it was read; enforcing that read",
                          error=self.rules.read_error)
        coverage = self.exec_guard.refresh()
        self.exec_gaps = dict(coverage.unmarked) if self.rules.exec_rules().active else {}
        for mount, reason in self.exec_gaps.items():
            self.log.warn("exec rules are not enforced on a filesystem", mount=mount, reason=reason)
        if self.rules.state_error is not None:
            self.log.error("cannot read the rules' paths; enforcing those last read",
                                  error=str(self.rules.state_error))
        for key, reason in result.unmarked.items():
            self.log.warn("denied inode has no markable path: not enforced", inode=f"{key[1]}:{key[0]}",
                                 reason=reason)
        return result.unmarked

    def drain(self, emit: Callable[[msgspec.Struct], None]) -> None:
        """Turn queued decisions of both guards into block events (the sample rate applies), count them in
        block_stats; at most :data:`_DRAIN_MAX` per call."""
        blocks = _take(self.guard.decisions, _DRAIN_MAX)
        blocks += [x.block for x in _take(self.exec_guard.decisions, _DRAIN_MAX - len(blocks))]
        decision = self.decoder.decision
        for d in blocks:
            if not self.sampled_out():
                emit(decision(d))
        self._count()

    def _count(self) -> None:
        """Add the guards' new matches and lost decisions to the pinned ``block_stats`` (this process is its
        only writer without LSM): every match counts, also those whose event a full queue dropped."""
        st, xs = self.guard.stats(), self.exec_guard.stats()
        total_blocks, total_dropped = st.blocks + xs.blocks, st.dropped + xs.dropped
        blocks, drops = total_blocks - self._blocks_seen, total_dropped - self._drops_seen
        if not blocks and not drops:
            return
        stats = self.pins.block_stats
        try:
            per_cpu = stats.lookup_elem(0)
            first = per_cpu[0]
            per_cpu[0] = msgspec.structs.replace(first, blocks=first.blocks + blocks,
                                                 ringbuf_drops=first.ringbuf_drops + drops)
            stats.update_elem(0, per_cpu)
        except BPFError as err:
            self.log.warn("cannot update block_stats", error=str(err))
            return
        self._blocks_seen, self._drops_seen = total_blocks, total_dropped

    @property
    def running(self) -> bool:
        """False once a responder stopped: every marked file (or filesystem's execs) then passes (fail-open).
        The exec guard holds no group while no exec rule is live; that is not a stop."""
        exec_ok = self.exec_guard.running or not self.rules.exec_rules().active
        return self.guard.running and exec_ok

    @property
    def errors(self) -> int:
        """Permission events answered ALLOW because handling them failed (fail-open), so far."""
        return self.guard.stats().errors + self.exec_guard.stats().errors

    def close(self) -> None:
        """Stop answering (the marks go with the groups) and count what was decided meanwhile. Idempotent."""
        self.exec_guard.stop()
        self.guard.stop()
        self._count()
