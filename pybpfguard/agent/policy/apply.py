"""``policy apply``: fill the idle rule set, switch to it in one step, record the snapshot (docs/policy.md).

The steps, each a span of its own (``policy.create_shadows``, ``policy.sync_shadows_to_live``,
``policy.commit_generation``):

1. Under the rule-edit lock, count an edit (so a daemon reading the rule sets re-reads them) and empty
   the idle set; fill it with the new rules (without ``reset``: the live set's rules too) and the agent's
   own cgroups. Map capacities were checked before anything was written.
2. Switch: one write of the ``rule_set`` selector. Every hook reads the selector once per run, so each
   decision is made against the old set or the new one, both complete, and the mode never changes.
3. Hints, deny.db and deny.handles for the new set; count the edit again and wait for a running daemon
   to confirm (fanotify marks: the daemon adds those of the new set before it removes the old ones).
4. Snapshots: ``policy.applied`` -> ``policy.applied.prev``, the new text and its SHA-256.

A failure before step 2 leaves the live set untouched. A failure after it switches back to the previous
set (still intact: it became the idle one) unless ``rollback`` is False. The previous set stays in the idle
slot until the next apply, which is what :func:`switch_back` (and the canary) use.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import time
from collections.abc import Callable, Iterator, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pybpfguard.agent import config, rulesync
from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.handlestore import HandleDb, HandleRecord, handles_path, mount_points, take_handle
from pybpfguard.agent.maps import (
    ALLOWLIST_ON_KEY,
    CGROUP_INODE_KEY,
    COMM_KEY_BYTES,
    DENY_PATH_KEY_BYTES,
    INODE_KEY,
    PinnedMaps,
    RuleSet,
)
from pybpfguard.agent.paths import InodeKey
from pybpfguard.agent.policy.resolve import RuleSetContent
from pybpfguard.agent.rules import refresh_hints
from pybpfguard.agent.statefiles import DenyDb, DenyDbEntry, write_atomic

__all__ = ["ApplyError", "ApplyResult", "CapacityError", "apply_content", "read_set", "switch_back"]

SpanFactory = Callable[[str], contextlib.AbstractContextManager[Any]]


class ApplyError(AgentError, RuntimeError):
    """An apply step failed; the message says which and what is in force now."""


class CapacityError(ApplyError):
    """The new rule set does not fit a map (nothing was written)."""


@dataclass
class ApplyResult:
    """``outcome`` (ENFORCED: a running daemon confirmed, or STORED: no daemon confirmed), ``why`` a daemon
    left it stored, ``live`` the set index now live, ``counts`` per map, ``seconds_switch`` the switch's
    duration, ``warnings``."""

    outcome: rulesync.Outcome
    why: str
    live: int
    counts: dict[str, int]
    seconds_switch: float
    warnings: list[str] = field(default_factory=list)
    previous: int = 0  # the set that was live before (intact in the idle slot)
    previous_paths: list[DenyDbEntry] = field(default_factory=list)  # deny.db before


def _nospan(_name: str) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext()


# -- reading and writing one set ----------------------------------------------------------------------

def read_set(rule_set: RuleSet, db_entries: list[DenyDbEntry]) -> RuleSetContent:
    """The content of *rule_set* as values (paths from *db_entries* for the inodes it denies)."""
    out = RuleSetContent()
    out.deny_inode = {(k.ino, k.dev): int(v) for k, v in rule_set.deny_inode.lookup_batch()}
    out.paths = [e for e in db_entries if e.key in out.deny_inode]
    out.allow_cgroup = {int(k) for k in rule_set.allow_cgroup}
    out.deny_comm = set(rule_set.comm_names())
    out.cgroup_deny_inode = {(k.cgid, (k.ino, k.dev)) for k in rule_set.deny_cgroup_inode}
    allow_exec, out.allowlist = rule_set.exec_allowlist()
    out.allow_exec = set(allow_exec)
    return out


def _put(m: Any, keys: list[Any]) -> None:
    if keys:
        m.update_batch(keys, [1] * len(keys))


def _path_keys(content: RuleSetContent) -> set[bytes]:
    paths = {e.path for e in content.paths}
    for raw in content.raw_paths.values():
        paths |= raw
    return {p.ljust(DENY_PATH_KEY_BYTES, b"\0") for p in paths if len(p) < DENY_PATH_KEY_BYTES}


def _check_capacity(target: RuleSet, content: RuleSetContent) -> None:
    need = {"deny_inode": len(content.deny_inode), "deny_path": len(_path_keys(content)),
            "allow_cgroup": len(content.allow_cgroup), "deny_comm": len(content.deny_comm),
            "deny_cgroup_inode": len(content.cgroup_deny_inode),
            "allow_exec_inode": len(content.allow_exec) + int(content.allowlist)}
    for name, count in need.items():
        limit = target.maps[name].spec.max_entries
        if count > limit:
            raise CapacityError(f"{name}: the new rule set needs {count} entries, the map holds {limit} "
                                f"(--max-deny-inodes / --max-deny-paths size it when the daemon creates it)")


_INODE_KEY_STRUCT = struct.Struct("<QII")  # INODE_KEY: {u64 ino, u32 dev, u32 pad}


def _write_set(target: RuleSet, content: RuleSetContent) -> None:
    """Empty *target* (the idle set), then write *content* into it."""
    target.clear()
    by_flags: dict[int, list[InodeKey]] = {}
    for key, flags in content.deny_inode.items():
        by_flags.setdefault(flags, []).append(key)
    for flags, keys in by_flags.items():
        # packed keys: building 65,536 layout values would cost more than the kernel's whole insert
        packed = b"".join(_INODE_KEY_STRUCT.pack(ino, dev, 0) for ino, dev in keys)
        target.deny_inode.update_batch(packed, bytes([flags]) * len(keys))
    _put(target.deny_path, sorted(_path_keys(content)))
    _put(target.allow_cgroup, sorted(content.allow_cgroup))
    _put(target.deny_comm, sorted(n.ljust(COMM_KEY_BYTES, b"\0") for n in content.deny_comm))
    _put(target.deny_cgroup_inode, [CGROUP_INODE_KEY.value(cgid=c, ino=i, dev=d) for c, (i, d) in
                                    sorted(content.cgroup_deny_inode)])
    allow = [INODE_KEY.value(ino=i, dev=d) for i, d in sorted(content.allow_exec)]
    _put(target.allow_exec_inode, allow + ([ALLOWLIST_ON_KEY] if content.allowlist else []))


def merge(live: RuleSetContent, new: RuleSetContent) -> RuleSetContent:
    """Apply without ``--reset``: the live rules plus *new*'s (deny flags or-ed; allowlist mode if either)."""
    out = RuleSetContent(deny_inode=dict(live.deny_inode), paths=list(live.paths),
                         raw_paths={k: set(v) for k, v in live.raw_paths.items()},
                         allow_cgroup=set(live.allow_cgroup), deny_comm=set(live.deny_comm),
                         cgroup_deny_inode=set(live.cgroup_deny_inode), allow_exec=set(live.allow_exec),
                         allowlist=live.allowlist or new.allowlist, notes=list(new.notes))
    for key, flags in new.deny_inode.items():
        out.deny_inode[key] = out.deny_inode.get(key, 0) | flags
    known = set(out.paths)
    out.paths += [e for e in new.paths if e not in known]
    for key, raw in new.raw_paths.items():
        out.raw_paths.setdefault(key, set()).update(raw)
    out.allow_cgroup |= new.allow_cgroup
    out.deny_comm |= new.deny_comm
    out.cgroup_deny_inode |= new.cgroup_deny_inode
    out.allow_exec |= new.allow_exec
    return out


# -- the apply --------------------------------------------------------------------------------------

def apply_content(pins: PinnedMaps, content: RuleSetContent, *, reset: bool, agent_cgids: Set[int],
                  db: DenyDb, span: SpanFactory = _nospan, rollback: bool = True,
                  confirm_timeout_s: float = rulesync.CONFIRM_TIMEOUT_S,
                  after_switch: Callable[[], None] | None = None) -> ApplyResult:
    """Make *content* (resolved, :func:`~pybpfguard.agent.policy.resolve.resolve_policy`) the live rule set;
    call with the rule-edit lock held. *after_switch* runs after the switch (the canary; snapshot writing):
    if it raises, the previous set is switched back (unless not *rollback*) and ApplyError says so.
    Raises CapacityError (nothing written), ApplyError."""
    live = pins.refresh_live()
    idle = pins.sets[1 - live.index]
    entries = db.read()
    new = content if reset else merge(read_set(live, entries), content)
    new.allow_cgroup |= set(agent_cgids)
    _check_capacity(idle, new)
    handles = _handles(new, db, reset=reset)
    with span("policy.create_shadows"):
        rulesync.bump_generation(pins.rule_sync)  # a daemon reading the sets now re-reads them
        _write_set(idle, new)
    warnings = list(new.notes)
    with span("policy.sync_shadows_to_live"):
        if new.deny_inode or new.cgroup_deny_inode:
            refresh_hints(pins, assume_rules=True)  # never "empty" while a set with rules is live
        started = time.perf_counter()
        pins.switch_to(idle.index)
        switch_s = time.perf_counter() - started
    try:
        with span("policy.commit_generation"):
            refresh_hints(pins)
            _write_paths(db, new, handles)
            if after_switch is not None:
                after_switch()
    except BaseException as err:
        if not rollback:
            raise ApplyError(f"the new rules are live, but a step after the switch failed: {err}") from err
        switch_back(pins, live.index, db, entries)
        raise ApplyError(f"a step after the switch failed ({err}); switched back to the previous rules") from err
    generation = rulesync.bump_generation(pins.rule_sync)
    outcome, why = rulesync.confirm(pins.rule_sync, generation, pins.root, timeout_s=confirm_timeout_s)
    return ApplyResult(outcome, why, idle.index, new.summary(), switch_s, warnings, live.index, entries)


def switch_back(pins: PinnedMaps, index: int, db: DenyDb | None = None,
                paths: list[DenyDbEntry] | None = None) -> int:
    """Make set *index* live again (the previous rules, intact in the idle slot), refresh the hints, put
    deny.db back to *paths* when given; returns the new generation (for a daemon to confirm)."""
    pins.switch_to(index)
    refresh_hints(pins)
    if db is not None and paths is not None:
        db.write(paths)
    return rulesync.bump_generation(pins.rule_sync)


def _handles(new: RuleSetContent, db: DenyDb, *, reset: bool) -> list[HandleRecord]:
    """deny.handles for the new set: the records kept (those of its inodes, or all without *reset*) and a new
    handle for each of its paths that has none (a file without one is not found again after a rename)."""
    known = HandleDb(handles_path(db.path)).read()
    out = [r for k, r in known.items() if not reset or k in new.deny_inode]
    have = {r.key for r in out}
    mounts = mount_points()
    for e in new.paths:
        if e.key in have:
            continue
        with contextlib.suppress(OSError):
            out.append(take_handle(e.path, e.key, mounts))
            have.add(e.key)
    return out


def _write_paths(db: DenyDb, new: RuleSetContent, handles: list[HandleRecord]) -> None:
    """deny.db and deny.handles for the new live set (a daemon marks inodes through these paths)."""
    db.write(_unique(new.paths))
    HandleDb(handles_path(db.path)).replace(handles)


def _unique(entries: list[DenyDbEntry]) -> Iterator[DenyDbEntry]:
    seen: set[DenyDbEntry] = set()
    for e in entries:
        if e not in seen:
            seen.add(e)
            yield e


# -- snapshots ----------------------------------------------------------------------------------------

def record_snapshot(text: bytes) -> str:
    """``policy.applied`` -> ``policy.applied.prev``; write *text* and its SHA-256 (hex, newline). Returns
    the hex digest."""
    applied = config.state_file("policy.applied")
    prev = config.state_file("policy.applied.prev")
    with contextlib.suppress(FileNotFoundError):
        write_atomic(prev, applied.read_bytes())
    write_atomic(applied, text)
    digest = hashlib.sha256(text).hexdigest()
    write_atomic(config.state_file("policy.applied.sha256"), f"{digest}\n".encode())
    return digest


def swap_snapshots() -> None:
    """``policy rollback``: the previous snapshot becomes the current one and the other way round."""
    applied = config.state_file("policy.applied")
    prev = config.state_file("policy.applied.prev")
    current = applied.read_bytes()
    previous = prev.read_bytes()
    write_atomic(applied, previous)
    write_atomic(prev, current)
    write_atomic(config.state_file("policy.applied.sha256"), f"{hashlib.sha256(previous).hexdigest()}\n".encode())


def read_snapshot(name: str = "policy.applied") -> tuple[bytes, Path]:
    """The bytes of snapshot *name* and its path. Raises FileNotFoundError."""
    path = config.state_file(name)
    return path.read_bytes(), path

