"""Rule edits shared by the CLI (docs/cli.md): ``block add|del|list|clear``, ``allow add|del|list``.

Every edit writes the pinned maps directly (the daemon need not run) and ``deny.db``; each validates all
its input before it changes anything, and undoes its map writes if recording them fails, so nothing is
half-applied. The CLI then asks a running daemon to re-sync (:func:`pybpfguard.agent.instance.request_sync`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from pybpfguard.agent import config
from pybpfguard.agent.cgroups import cgroup2_mount
from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.handlestore import HandleDb, handles_path, take_handle
from pybpfguard.agent.maps import BLOCK_STATS, DENY_ALWAYS, DENY_PATH_KEY_BYTES, INODE_KEY, PinnedMaps, RuleSet
from pybpfguard.agent.paths import DENY_PATH_MAX_BYTES, InodeKey, PathRuleError, resolve_rule_path
from pybpfguard.agent.statefiles import DenyDb, DenyDbEntry, escape_path
from pybpfguard.bpf.cpus import possible_cpus
from pybpfguard.bpf.errors import KeyNotFoundError
from pybpfguard.bpf.maps import Map


def _discard(m: Map, key: object) -> bool:
    """Delete *key* from *m*; False when it was not there."""
    try:
        m.delete_elem(key)
    except KeyNotFoundError:
        return False
    return True


class RuleError(AgentError, ValueError):
    """A rule command was refused; the message names the input and the reason."""


@dataclass
class EditResult:
    """What an edit did: ``changed`` (anything new), ``warnings`` for the operator, ``denied`` the inode a
    ``block add`` put a rule on."""

    changed: bool
    warnings: list[str] = field(default_factory=list)
    denied: InodeKey | None = None


def _path_key(path: bytes) -> bytes | None:
    """The NUL-padded ``deny_path`` key, or None when the path does not fit (enforced by inode alone)."""
    return path.ljust(DENY_PATH_KEY_BYTES, b"\0") if len(path) < DENY_PATH_KEY_BYTES else None


def file_rules_empty(rule_set: RuleSet) -> bool:
    """No inode rule, global or cgroup-scoped, in *rule_set* (what the ``file_policy_empty`` hint says)."""
    return all(next(iter(m.keys()), None) is None for m in (rule_set.deny_inode, rule_set.deny_cgroup_inode))


def refresh_hints(pins: PinnedMaps, *, assume_rules: bool = False) -> None:
    """Recompute ``file_policy_empty`` in the agent configuration from the live set's inode-rule maps;
    *assume_rules*: clear the hint whatever the maps hold (before a switch to a set that has rules)."""
    cfg = pins.agent_config
    current = cfg.lookup_elem(0)
    empty = int(not assume_rules and file_rules_empty(pins.live))
    if current.file_policy_empty != empty:
        cfg.update_elem(0, msgspec.structs.replace(current, file_policy_empty=empty))


def block_add(pins: PinnedMaps, db: DenyDb, path: str | bytes) -> EditResult:
    """Deny the file *path* names now, by inode (and by path where it fits the path map)."""
    try:
        resolved = resolve_rule_path(path, DENY_PATH_MAX_BYTES)
    except PathRuleError as err:
        raise RuleError(str(err)) from err
    if (refusal := mechanism_refusal(resolved.mode)) is not None:
        raise RuleError(f"{os.fsdecode(resolved.canonical)}: {refusal}")
    key = INODE_KEY.value(ino=resolved.ino, dev=resolved.dev)
    result = EditResult(changed=False, denied=resolved.key)
    if pins.survival_allowlist.get(key) is not None:
        result.warnings.append(f"{os.fsdecode(resolved.canonical)} is on the survival allowlist: "
                               "the rule is recorded but never enforced")
    try:
        handle = take_handle(resolved.canonical, resolved.key)
    except OSError as err:
        handle = None
        result.warnings.append(f"{os.fsdecode(resolved.canonical)}: no file handle ({os.strerror(err.errno or 0)}): "
                               "if this file is renamed, the rule is not found again after a daemon restart")
    deny_inode, deny_path = pins.deny_inode, pins.deny_path
    old_flags = deny_inode.get(key)
    path_keys = [k for k in {_path_key(resolved.canonical), _path_key(resolved.raw)} if k is not None]
    new_path_keys = [k for k in path_keys if deny_path.get(k) is None]
    deny_inode.update_elem(key, (old_flags or 0) | DENY_ALWAYS)
    try:
        for k in new_path_keys:
            deny_path.update_elem(k, 1)
        if handle is not None:  # before deny.db: a record without a rule is ignored, a rule without one is not
            HandleDb(handles_path(db.path)).put(handle)
        result.changed = db.add(DenyDbEntry(resolved.dev, resolved.ino, resolved.canonical)) or old_flags is None
    except BaseException:
        for k in new_path_keys:
            _discard(deny_path, k)
        if old_flags is None:
            _discard(deny_inode, key)
        else:
            deny_inode.update_elem(key, old_flags)
        raise
    refresh_hints(pins)
    return result


def mechanism_refusal(mode: int) -> str | None:
    """Why the file enforcement at hand (the running daemon's, else what this host offers) cannot deny
    opens of a file of type *mode*, or None. Regular files and directories never need the question."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    from pybpfguard.agent.filetypes import unenforceable_reason
    from pybpfguard.agent.options import HookState
    from pybpfguard.agent.runtime import read_runtime
    from pybpfguard.bpf import features

    running = read_runtime()
    lsm = running.hooks.get("file_open") == HookState.ATTACHED if running is not None else features.bpf_lsm().available
    return unenforceable_reason(mode, bpf_lsm=lsm)


def block_del(pins: PinnedMaps, db: DenyDb, path: str | bytes) -> EditResult:
    """Remove the rule on the file *path* names now; when that file has none (the path is gone, or names
    another file than the one denied), remove the rules deny.db records under *path* instead.

    Only one of the two, so a rule on a file that was moved aside (an editor's save, a log rotation) is not
    dropped together with the rule on the file that took its name; a warning counts the rules still
    recorded under *path*. Raises RuleError when no inode rule was removed (leftover deny.db lines and
    deny_path keys of it are tidied all the same), StateFileError when deny.db cannot be read."""
    raw = os.fsencode(path)
    entries = db.read()
    try:
        resolved = resolve_rule_path(raw, DENY_PATH_MAX_BYTES)
    except PathRuleError:
        resolved = None
    named = {raw, resolved.canonical} if resolved is not None else {raw}
    recorded = {e.key for e in entries if e.path in named}
    deny_inode = pins.deny_inode
    if resolved is not None and deny_inode.get(INODE_KEY.value(ino=resolved.ino, dev=resolved.dev)) is not None:
        keys = {resolved.key}
    else:
        keys = recorded
    if not keys:
        raise RuleError(f"{os.fsdecode(raw)}: no rule for this path")
    removed = stale = False
    for ino, dev in keys:
        removed |= _discard(deny_inode, INODE_KEY.value(ino=ino, dev=dev))
        stale |= db.remove_key((ino, dev)) > 0
    HandleDb(handles_path(db.path)).remove_keys(keys)
    for p in named | {e.path for e in entries if e.key in keys}:
        k = _path_key(p)
        if k is not None:
            stale |= _discard(pins.deny_path, k)
    refresh_hints(pins)
    if not removed:  # success means a rule that denied something is gone, not that leftovers were tidied
        raise RuleError(f"{os.fsdecode(raw)}: no rule for this path"
                        + (" (leftover records of it, with no inode rule behind them, were removed)" if stale else ""))
    result = EditResult(True)
    if left := len(recorded - keys):
        result.warnings.append(f"{left} other rule{'s' if left > 1 else ''} recorded under this path "
                               f"remain{'' if left > 1 else 's'} (on files moved or replaced since): "
                               "`block del` the path again to remove them, `block list` shows them")
    return result


def block_list(pins: PinnedMaps, db: DenyDb, unenforced: Mapping[str, str] | None = None) -> list[str]:
    """One line per deny_inode entry: ``<path> (<dev>:<ino>)``, or ``<dev>:<ino>`` without a recorded path;
    followed by `` [not enforced: <reason>]`` for a rule in *unenforced* (``"<dev>:<ino>"`` -> reason, as
    the running daemon publishes it)."""
    paths = db.deny_paths()
    unenforced = unenforced or {}
    lines = []
    for key in sorted(pins.deny_inode.keys(), key=lambda k: (k.dev, k.ino)):
        path = paths.get((key.ino, key.dev))
        ident = f"{key.dev}:{key.ino}"
        # escaped as in deny.db, so a newline in a name cannot make one entry look like two
        line = f"{os.fsdecode(escape_path(path))} ({ident})" if path is not None else ident
        if ident in unenforced:
            line += f" [not enforced: {unenforced[ident].replace(chr(10), ' ')}]"
        lines.append(line)
    return lines


def block_clear(pins: PinnedMaps, db: DenyDb, keep_cgids: set[int]) -> None:
    """Empty deny_inode, deny_path, allow_cgroup (but *keep_cgids*) and the block counters; remove deny.db
    and the applied-policy snapshots. Network rules and the survival allowlist are kept."""
    for m in (pins.deny_inode, pins.deny_path):
        for k in list(m.keys()):
            _discard(m, k)
    allow = pins.allow_cgroup
    for cgid in list(allow.keys()):
        if cgid not in keep_cgids:
            _discard(allow, cgid)
    zero = BLOCK_STATS.value()
    pins.block_stats.update_elem(0, [zero] * possible_cpus())
    db.clear()
    HandleDb(handles_path(db.path)).clear()
    for name in ("policy.applied", "policy.applied.prev", "policy.applied.sha256"):
        config.state_file(name).unlink(missing_ok=True)
    refresh_hints(pins)


def agent_cgids() -> set[int]:
    """The agent's own cgroups, which `block clear` and every `policy apply` keep in ``allow_cgroup``: the
    running daemon's (under systemd, its unit's cgroup) and the configured agent cgroup."""
    from pybpfguard.agent.runtime import read_runtime

    cgids = set()
    running = read_runtime()
    if running is not None:
        cgids.add(running.agent_cgid)
    try:
        cgids.add(os.stat(config.agent_cgroup()).st_ino)
    except OSError:
        pass  # no agent cgroup on this host now
    return cgids


def resolve_cgroup(spec: str) -> int:
    """``cgid:<N>`` or a cgroup v2 directory path -> cgid (its inode number). Raises RuleError."""
    if spec.startswith("cgid:"):
        try:
            cgid = int(spec[5:], 10)
        except ValueError:
            raise RuleError(f"{spec}: cgid must be a decimal number") from None
        if not 0 < cgid < 1 << 64:
            raise RuleError(f"{spec}: cgid out of range")
        return cgid
    path = Path(spec)
    if not path.is_absolute():
        raise RuleError(f"{spec}: relative path; give the cgroup v2 directory's absolute path")
    mount = Path(os.fsdecode(cgroup2_mount()))
    try:
        real = path.resolve(strict=True)
    except OSError as err:
        raise RuleError(f"{spec}: {err.strerror}") from err
    if not (real == mount or mount in real.parents) or not (real / "cgroup.procs").exists():
        raise RuleError(f"{spec}: not a cgroup v2 directory (cgroup2 is mounted at {mount})")
    return os.stat(real).st_ino


def allow_add(pins: PinnedMaps, spec: str) -> EditResult:
    cgid = resolve_cgroup(spec)
    allow = pins.allow_cgroup
    changed = allow.get(cgid) is None
    allow.update_elem(cgid, 1)
    return EditResult(changed)


def allow_del(pins: PinnedMaps, spec: str) -> EditResult:
    if spec.startswith("cgid:"):
        cgid = resolve_cgroup(spec)
    else:
        try:
            cgid = resolve_cgroup(spec)
        except RuleError:
            raise RuleError(f"{spec}: no such cgroup; use cgid:<N> to remove a rule for a deleted cgroup") from None
    if not _discard(pins.allow_cgroup, cgid):
        raise RuleError(f"{spec}: not in allow_cgroup")
    return EditResult(True)


def allow_list(pins: PinnedMaps) -> list[int]:
    return sorted(pins.allow_cgroup.keys())
