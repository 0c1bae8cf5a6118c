"""Resolve a parsed policy against this host: the rule-set content ``policy apply`` writes (docs/policy.md).

Paths are canonicalized and stat'ed (they must exist now), cgroup paths become cgids, binary hashes become
the inodes of the files that have them. Nothing here writes anything: a policy that fails to resolve
raises PolicyError naming its file and line, and no map or state file has changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pybpfguard.agent.maps import COMM_KEY_BYTES, DENY_ALWAYS
from pybpfguard.agent.paths import DENY_PATH_MAX_BYTES, InodeKey, PathRuleError, resolve_rule_path
from pybpfguard.agent.policy.model import CgroupDenyInode, CgroupRef, InodeRef, Policy, PolicyError, Section
from pybpfguard.agent.rules import RuleError, mechanism_refusal, resolve_cgroup
from pybpfguard.agent.statefiles import DenyDbEntry

__all__ = ["RuleSetContent", "resolve_policy"]


@dataclass
class RuleSetContent:
    """What one rule set holds, as values: ``deny_inode`` (ino, dev) -> flags; ``paths`` the deny.db lines
    (canonical path per denied inode, and the raw path where it differs, for the path map); ``allow_cgroup``
    cgids; ``deny_comm`` basenames (<= 15 bytes); ``cgroup_deny_inode`` (cgid, (ino, dev)); ``allow_exec``
    inode keys and ``allowlist`` (allowlist mode on); ``notes`` for the operator (per file:line)."""

    deny_inode: dict[InodeKey, int] = field(default_factory=dict)
    paths: list[DenyDbEntry] = field(default_factory=list)
    raw_paths: dict[InodeKey, set[bytes]] = field(default_factory=dict)
    allow_cgroup: set[int] = field(default_factory=set)
    deny_comm: set[bytes] = field(default_factory=set)
    cgroup_deny_inode: set[tuple[int, InodeKey]] = field(default_factory=set)
    allow_exec: set[InodeKey] = field(default_factory=set)
    allowlist: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        """Entry counts per map, for ``--dry-run`` and the apply report."""
        return {"deny_inode": len(self.deny_inode), "deny_path": len({e.path for e in self.paths}),
                "allow_cgroup": len(self.allow_cgroup), "deny_comm": len(self.deny_comm),
                "deny_cgroup_inode": len(self.cgroup_deny_inode), "allow_exec_inode": len(self.allow_exec)}


#: (digests, extra roots) -> {digest: inode keys}; the default scans the standard binary directories.
HashScanner = Callable[[set[bytes], Sequence[bytes]], dict[bytes, set[InodeKey]]]


def _default_scanner(digests: set[bytes], roots: Sequence[bytes]) -> dict[bytes, set[InodeKey]]:
    from pybpfguard.agent.policy.hashscan import scan

    return dict(scan(digests, roots).matches)


def _cgid(ref: CgroupRef, source: str, line: int) -> int:
    spec = f"cgid:{ref.cgid}" if ref.cgid is not None else os.fsdecode(ref.path or b"")
    try:
        return resolve_cgroup(spec)
    except RuleError as err:
        raise PolicyError(source, line, str(err)) from None


def resolve_policy(policy: Policy, source: str, *, scanner: HashScanner | None = None) -> RuleSetContent:
    """*policy* -> the content of a rule set. Raises PolicyError (file:line) for a section this release
    does not enforce, a path that does not exist or names a file this host's file enforcement cannot
    gate, a cgroup that does not exist."""
    from pybpfguard.agent.policy.support import unsupported

    for section, line, reason in unsupported(policy):
        raise PolicyError(source, line, f"[{section.value}] is not enforced by this release ({reason}); "
                          "remove the section to apply the rest")
    out = RuleSetContent()
    for entry in policy.entries(Section.DENY_PATH):
        path = entry.value
        assert isinstance(path, bytes)
        try:
            resolved = resolve_rule_path(path, DENY_PATH_MAX_BYTES)
        except PathRuleError as err:
            raise PolicyError(source, entry.line, str(err)) from None
        if (refusal := mechanism_refusal(resolved.mode)) is not None:
            raise PolicyError(source, entry.line, f"{os.fsdecode(resolved.canonical)}: {refusal}")
        out.deny_inode[resolved.key] = out.deny_inode.get(resolved.key, 0) | DENY_ALWAYS
        out.paths.append(DenyDbEntry(resolved.dev, resolved.ino, resolved.canonical))
        out.raw_paths.setdefault(resolved.key, set()).update({resolved.canonical, resolved.raw})
    for entry in policy.entries(Section.DENY_INODE):
        ref = entry.value
        assert isinstance(ref, InodeRef)
        out.deny_inode[(ref.ino, ref.dev)] = out.deny_inode.get((ref.ino, ref.dev), 0) | DENY_ALWAYS
    for entry in policy.entries(Section.ALLOW_CGROUP):
        assert isinstance(entry.value, CgroupRef)
        out.allow_cgroup.add(_cgid(entry.value, source, entry.line))
    for entry in policy.entries(Section.DENY_COMM):
        name = entry.value
        assert isinstance(name, bytes) and 0 < len(name) < COMM_KEY_BYTES
        out.deny_comm.add(name)
    for entry in policy.entries(Section.CGROUP_DENY_INODE):
        rule = entry.value
        assert isinstance(rule, CgroupDenyInode)
        out.cgroup_deny_inode.add((_cgid(rule.cgroup, source, entry.line), (rule.inode.ino, rule.inode.dev)))
    _resolve_hashes(policy, out, scanner or _default_scanner)
    return out


def _resolve_hashes(policy: Policy, out: RuleSetContent, scanner: HashScanner) -> None:
    deny = {e.value for e in policy.entries(Section.DENY_BINARY_HASH)}
    allow = {e.value for e in policy.entries(Section.ALLOW_BINARY_HASH)}
    if not deny and not allow:
        return
    roots = [e.value for e in policy.entries(Section.SCAN_PATHS)]
    found = scanner({d for d in deny | allow if isinstance(d, bytes)}, [r for r in roots if isinstance(r, bytes)])
    for digest in deny:
        keys = found.get(digest, set())  # type: ignore[arg-type]
        for key in keys:
            out.deny_inode[key] = out.deny_inode.get(key, 0) | DENY_ALWAYS
        if not keys:
            out.notes.append(f"deny_binary_hash sha256:{digest.hex()}: no file with this hash in the scanned "  # type: ignore[union-attr]
                             "directories (files created later are not covered)")
    if allow:
        out.allowlist = True
        for digest in allow:
            out.allow_exec.update(found.get(digest, set()))  # type: ignore[arg-type]
