"""Resolve a parsed policy against this host: the rule-set content ``policy apply`` writes (docs/policy.md).

Paths are canonicalized and stat'ed (they must exist now), cgroup paths become cgids, binary hashes become
the inodes of the files that have them. Nothing here writes anything: a policy that fails to resolve
raises PolicyError naming its file and line, and no map or state file has changed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pybpfguard.agent.maps import COMM_KEY_BYTES, DENY_ALWAYS
from pybpfguard.agent.paths import DENY_PATH_MAX_BYTES, InodeKey, PathRuleError, resolve_rule_path
from pybpfguard.agent.policy.model import CgroupDenyInode, CgroupRef, InodeRef, Policy, PolicyError, Section
from pybpfguard.agent.rules import RuleError, mechanism_refusal, resolve_cgroup
from pybpfguard.agent.statefiles import DenyDbEntry

if TYPE_CHECKING:
    from pybpfguard.agent.policy.hashscan import ScanResult

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


#: (digests, extra roots) -> the scan's result; the default scans the standard binary directories too.
HashScanner = Callable[[set[bytes], Sequence[bytes]], "ScanResult"]


def _default_scanner(digests: set[bytes], roots: Sequence[bytes]) -> ScanResult:
    from pybpfguard.agent.policy.hashscan import scan

    return scan(digests, roots)


def _cgid(ref: CgroupRef, source: str, line: int) -> int:
    """The cgid a policy's cgroup names: ``cgid:N`` as given (the parser checked its range), a path
    resolved on this host."""
    if ref.cgid is not None:
        return ref.cgid
    try:
        return resolve_cgroup(os.fsdecode(ref.path or b""))
    except RuleError as err:
        raise PolicyError(source, line, str(err)) from None


def resolve_policy(policy: Policy, source: str, *, scanner: HashScanner | None = None) -> RuleSetContent:
    """*policy* -> the content of a rule set. Raises PolicyError (file:line) for a section this release
    does not enforce, a path that does not exist or names a file this host's file enforcement cannot
    gate, a cgroup that does not exist."""
    from pybpfguard.agent.policy.support import DIRECTORY_RULE, unsupported

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
        if stat.S_ISDIR(resolved.mode):
            out.notes.append(f"line {entry.line}: {os.fsdecode(resolved.canonical)} {DIRECTORY_RULE}")
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
    _resolve_hashes(policy, out, scanner or _default_scanner, source)
    return out


def _resolve_hashes(policy: Policy, out: RuleSetContent, scanner: HashScanner, source: str) -> None:
    """Hash the binary directories once for both lists: a denied digest's inodes join ``deny_inode`` (with
    their paths, which the fanotify tier marks them by), an allowed one's ``allow_exec``."""
    deny = {e.value for e in policy.entries(Section.DENY_BINARY_HASH) if isinstance(e.value, bytes)}
    allow = {e.value for e in policy.entries(Section.ALLOW_BINARY_HASH) if isinstance(e.value, bytes)}
    if not deny and not allow:
        return
    roots = {e.value: e.line for e in policy.entries(Section.SCAN_PATHS) if isinstance(e.value, bytes)}
    result = scanner(deny | allow, list(roots))
    for root in result.missing_roots:
        if root in roots:
            raise PolicyError(source, roots[root], f"{os.fsdecode(root)}: not a directory on this host")
    for digest in sorted(deny):
        found = result.matches.get(digest, {})
        for (ino, dev), path in found.items():
            out.deny_inode[(ino, dev)] = out.deny_inode.get((ino, dev), 0) | DENY_ALWAYS
            out.paths.append(DenyDbEntry(dev, ino, path))
        if not found:
            out.notes.append(f"deny_binary_hash sha256:{digest.hex()}: no file with this hash in the scanned "
                             "directories (files created later are not covered)")
    if allow:
        out.allowlist = True
        for digest in sorted(allow):
            found = result.matches.get(digest, {})
            out.allow_exec.update(found)
            if not found:
                out.notes.append(f"allow_binary_hash sha256:{digest.hex()}: no file with this hash in the scanned "
                                 "directories: it allows nothing")
        _note_writable([p for d in allow for p in result.matches.get(d, {}).values()], out.notes)
        if not out.allow_exec:
            out.notes.append("no file matches any [allow_binary_hash] entry: allowlist mode denies every exec "
                             "except the survival binaries' and those of exempt cgroups (allow_cgroup, the agent's)")
    if result.skipped:
        out.notes.append(f"binary-hash scan: {len(result.skipped)} files not hashed (first: "
                         f"{os.fsdecode(result.skipped[0].path)}: {result.skipped[0].detail})")


def _note_writable(paths: Sequence[bytes], notes: list[str]) -> None:
    """A note on the allowed files a user other than root may write (owned by another user, or writable by
    group or other): allowlist mode allows the inode, so such a user can change what it runs after the
    scan. A file gone since the scan is left alone (its inode allows nothing new)."""
    writable: list[bytes] = []
    for path in sorted(paths):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid != 0 or st.st_mode & 0o022:
            writable.append(path)
    if writable:
        notes.append(f"allow_binary_hash: {len(writable)} allowed files can be rewritten by a user other than root "
                     f"(first: {os.fsdecode(writable[0])}); their new content would run as allowed: make them "
                     "root-owned and not group or world writable")
