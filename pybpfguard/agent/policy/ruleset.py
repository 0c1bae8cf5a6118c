"""A :class:`~pybpfguard.agent.policy.model.Policy` -> the decision models' rule sets (docs/policy.md).

:func:`file_rules_from_policy` gives the :class:`~pybpfguard.agent.decision.FileRules` that
:func:`~pybpfguard.agent.decision.decide_file` takes, :func:`net_rules_from_policy` the
:class:`~pybpfguard.agent.netdecision.NetRules` of :func:`~pybpfguard.agent.netdecision.decide_net`, each
with what the maps do not keep: the policy paths (a ``deny_path`` entry is matched by inode and by path),
the ``deny_comm`` names, and which entry put each key in (``origins``, for ``explain``).

The host is consulted only through the resolvers passed in: *resolve* maps a rule path to its inode
(default :func:`pybpfguard.agent.paths.resolve_rule_path`: canonicalize and stat, dev in kernel encoding),
*resolve_cgroup* a cgroup directory to its cgid (default :func:`pybpfguard.agent.rules.resolve_cgroup`).
An entry they refuse is listed in ``unresolved`` and left out of the maps (a simulation may run on another
host); with ``strict=True`` it raises :class:`~pybpfguard.agent.policy.model.PolicyError` naming the line,
as apply must.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

from pybpfguard.agent.decision import FileRules
from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.maps import DENY_ALWAYS, PROTECT_VERIFIED_EXEC
from pybpfguard.agent.netdecision import NetRules
from pybpfguard.agent.paths import InodeKey, ResolvedPath, resolve_rule_path
from pybpfguard.agent.policy.hashscan import DEFAULT_ROOTS
from pybpfguard.agent.policy.model import (
    CgroupDenyInode,
    CgroupDenyIp,
    CgroupDenyPort,
    CgroupRef,
    Entry,
    InodeRef,
    IpPortRule,
    Policy,
    PolicyError,
    PortRule,
    Section,
)

__all__ = [
    "CgroupResolver",
    "FileRuleSet",
    "NetRuleSet",
    "PathResolver",
    "RuleSets",
    "Unresolved",
    "file_rules_from_policy",
    "net_rules_from_policy",
    "rule_sets_from_policy",
]

PathResolver = Callable[[bytes], ResolvedPath]
"""Rule path -> the file it names now; raises an AgentError (PathRuleError) when it cannot."""
CgroupResolver = Callable[[bytes], int]
"""cgroup v2 directory path -> cgid; raises an AgentError (RuleError) when it cannot."""
Origins = dict[tuple[Section, Hashable], Entry]
"""(section, the key the entry put in the model) -> the first entry that did."""


def _host_cgroup(path: bytes) -> int:
    from pybpfguard.agent.rules import resolve_cgroup

    return resolve_cgroup(os.fsdecode(path))


def _reason(err: Exception) -> str:
    """What a resolver said, without the path it was given (the entry names it already)."""
    reason = getattr(err, "reason", None)
    return reason if isinstance(reason, str) else str(err)


@dataclass(frozen=True, slots=True)
class Unresolved:
    """An entry the host could not resolve (a missing file or cgroup): left out of the rule set."""

    section: Section
    entry: Entry
    reason: str


@dataclass(frozen=True, slots=True)
class FileRuleSet:
    """``rules`` for :func:`~pybpfguard.agent.decision.decide_file`, ``cgroup_deny_inode`` included
    (survival empty: the allowlist is the host's, not the policy's); ``paths``: every
    ``deny_path``/``protect_path`` as written and canonical -> its ``deny_inode`` flags; ``comms``:
    ``deny_comm`` names; ``cgroup_paths``: ``allow_cgroup`` directories that did not resolve (an event's
    ``cgroup_path`` can still name them); ``origins``, ``unresolved``; ``deny_hashes``: the
    ``deny_binary_hash`` digests (32 bytes), which apply turns into inodes by scanning ``scan_roots`` (the
    standard executable directories, then ``[scan_paths]``): the replay checks one event's file instead."""

    rules: FileRules
    paths: Mapping[bytes, int] = field(default_factory=dict)
    comms: frozenset[bytes] = frozenset()
    cgroup_paths: frozenset[bytes] = frozenset()
    origins: Origins = field(default_factory=dict)
    unresolved: tuple[Unresolved, ...] = ()
    deny_hashes: frozenset[bytes] = frozenset()
    scan_roots: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class NetRuleSet:
    """``rules`` for :func:`~pybpfguard.agent.netdecision.decide_net`, ``origins``, ``unresolved``."""

    rules: NetRules
    origins: Origins = field(default_factory=dict)
    unresolved: tuple[Unresolved, ...] = ()


@dataclass(frozen=True, slots=True)
class RuleSets:
    file: FileRuleSet
    net: NetRuleSet


class _Builder:
    """Collects origins and unresolved entries; raises instead in strict mode."""

    def __init__(self, source: str, strict: bool, resolve_cgroup: CgroupResolver) -> None:
        self.source = source
        self.strict = strict
        self.resolve_cgroup = resolve_cgroup
        self.origins: Origins = {}
        self.unresolved: list[Unresolved] = []
        self._cgids: dict[bytes, int | None] = {}

    def origin(self, section: Section, key: Hashable, entry: Entry) -> None:
        self.origins.setdefault((section, key), entry)

    def fail(self, section: Section, entry: Entry, reason: str) -> None:
        if self.strict:
            raise PolicyError(self.source, entry.line, f"[{section.value}] {entry.text}: {reason}")
        self.unresolved.append(Unresolved(section, entry, reason))

    def cgid(self, section: Section, entry: Entry, ref: CgroupRef) -> int | None:
        if ref.cgid is not None:
            return ref.cgid
        assert ref.path is not None
        if ref.path not in self._cgids:
            try:
                self._cgids[ref.path] = self.resolve_cgroup(ref.path)
            except (AgentError, OSError) as err:
                self._cgids[ref.path] = None
                self.fail(section, entry, _reason(err))
                return None
        return self._cgids[ref.path]

    def allow_cgroups(self, policy: Policy) -> tuple[frozenset[int], frozenset[bytes]]:
        """``allow_cgroup``: the cgids, and the paths that did not resolve."""
        cgids, missing = set(), set()
        for entry in policy.entries(Section.ALLOW_CGROUP):
            ref = entry.value
            assert isinstance(ref, CgroupRef)
            cgid = self.cgid(Section.ALLOW_CGROUP, entry, ref)
            if cgid is None:
                missing.add(ref.path)
                continue
            cgids.add(cgid)
            self.origin(Section.ALLOW_CGROUP, cgid, entry)
        return frozenset(cgids), frozenset(p for p in missing if p is not None)


def _file_rules(policy: Policy, b: _Builder, resolve: PathResolver) -> FileRuleSet:
    deny: dict[InodeKey, int] = {}
    paths: dict[bytes, int] = {}
    for section, flag in ((Section.DENY_PATH, DENY_ALWAYS), (Section.PROTECT_PATH, PROTECT_VERIFIED_EXEC)):
        for entry in policy.entries(section):
            raw = entry.value
            assert isinstance(raw, bytes)
            paths[raw] = paths.get(raw, 0) | flag
            b.origin(section, raw, entry)
            try:
                resolved = resolve(raw)
            except (AgentError, OSError) as err:
                b.fail(section, entry, _reason(err))
                continue
            paths[resolved.canonical] = paths.get(resolved.canonical, 0) | flag
            b.origin(section, resolved.canonical, entry)
            deny[resolved.key] = deny.get(resolved.key, 0) | flag
            b.origin(section, resolved.key, entry)
    for entry in policy.entries(Section.DENY_INODE):
        ref = entry.value
        assert isinstance(ref, InodeRef)
        key = (ref.ino, ref.dev)
        deny[key] = deny.get(key, 0) | DENY_ALWAYS
        b.origin(Section.DENY_INODE, key, entry)
    cgroup_deny: set[tuple[int, InodeKey]] = set()
    for entry in policy.entries(Section.CGROUP_DENY_INODE):
        rule = entry.value
        assert isinstance(rule, CgroupDenyInode)
        cgid = b.cgid(Section.CGROUP_DENY_INODE, entry, rule.cgroup)
        if cgid is not None:
            ckey = (cgid, (rule.inode.ino, rule.inode.dev))
            cgroup_deny.add(ckey)
            b.origin(Section.CGROUP_DENY_INODE, ckey, entry)
    comms = set()
    for entry in policy.entries(Section.DENY_COMM):
        assert isinstance(entry.value, bytes)
        comms.add(entry.value)
        b.origin(Section.DENY_COMM, entry.value, entry)
    hashes = set()
    for entry in policy.entries(Section.DENY_BINARY_HASH):
        assert isinstance(entry.value, bytes)
        hashes.add(entry.value)
        b.origin(Section.DENY_BINARY_HASH, entry.value, entry)
    roots = (*DEFAULT_ROOTS, *(e.value for e in policy.entries(Section.SCAN_PATHS) if isinstance(e.value, bytes)))
    allow, missing = b.allow_cgroups(policy)
    return FileRuleSet(FileRules(deny, allow, frozenset(), frozenset(cgroup_deny)), paths, frozenset(comms),
                       missing, b.origins, tuple(b.unresolved), frozenset(hashes), roots if hashes else ())


def _net_rules(policy: Policy, b: _Builder) -> NetRuleSet:
    keys: dict[Section, set[Hashable]] = {s: set() for s in (Section.DENY_IP, Section.DENY_CIDR, Section.DENY_PORT,
                                                               Section.DENY_IP_PORT, Section.CGROUP_DENY_IP,
                                                               Section.CGROUP_DENY_PORT)}
    for section, found in keys.items():
        for entry in policy.entries(section):
            value = entry.value
            key: Hashable
            if isinstance(value, PortRule):
                key = (value.port, int(value.protocol), int(value.direction))
            elif isinstance(value, IpPortRule):
                key = (value.address, value.port, int(value.protocol))
            elif isinstance(value, (CgroupDenyIp, CgroupDenyPort)):
                cgid = b.cgid(section, entry, value.cgroup)
                if cgid is None:
                    continue
                if isinstance(value, CgroupDenyIp):
                    key = (cgid, value.address)
                else:
                    key = (cgid, value.rule.port, int(value.rule.protocol), int(value.rule.direction))
            else:
                key = value  # an address or a network
            found.add(key)
            b.origin(section, key, entry)
    allow, _ = b.allow_cgroups(policy)
    rules = NetRules(
        ips=frozenset(keys[Section.DENY_IP]), cidrs=frozenset(keys[Section.DENY_CIDR]),  # type: ignore[arg-type]
        ports=frozenset(keys[Section.DENY_PORT]), ip_ports=frozenset(keys[Section.DENY_IP_PORT]),  # type: ignore[arg-type]
        cgroup_ips=frozenset(keys[Section.CGROUP_DENY_IP]),  # type: ignore[arg-type]
        cgroup_ports=frozenset(keys[Section.CGROUP_DENY_PORT]),  # type: ignore[arg-type]
        allow_cgroups=allow, protect_connect=policy.has(Section.PROTECT_CONNECT))
    return NetRuleSet(rules, b.origins, tuple(b.unresolved))


def file_rules_from_policy(policy: Policy, resolve: PathResolver = resolve_rule_path, *,
                           resolve_cgroup: CgroupResolver = _host_cgroup, strict: bool = False,
                           source: str = "<policy>") -> FileRuleSet:
    """The file rule set of *policy*: ``deny_path`` (DENY_ALWAYS) and ``protect_path``
    (PROTECT_VERIFIED_EXEC) resolved by *resolve* to inodes and kept as paths, ``deny_inode``,
    ``allow_cgroup``, ``cgroup_deny_inode``, ``deny_comm``. *strict*: raise PolicyError (*source*, line)
    for the first entry that does not resolve, instead of listing it in ``unresolved``."""
    return _file_rules(policy, _Builder(source, strict, resolve_cgroup), resolve)


def net_rules_from_policy(policy: Policy, *, resolve_cgroup: CgroupResolver = _host_cgroup, strict: bool = False,
                          source: str = "<policy>") -> NetRuleSet:
    """The network rule set of *policy*: ``deny_ip``, ``deny_cidr``, ``deny_port``, ``deny_ip_port``,
    ``cgroup_deny_ip``, ``cgroup_deny_port`` (cgroups resolved by *resolve_cgroup*), ``allow_cgroup``
    and ``protect_connect``. *strict* as for :func:`file_rules_from_policy`."""
    return _net_rules(policy, _Builder(source, strict, resolve_cgroup))


def rule_sets_from_policy(policy: Policy, resolve: PathResolver = resolve_rule_path, *,
                          resolve_cgroup: CgroupResolver = _host_cgroup, strict: bool = False,
                          source: str = "<policy>") -> RuleSets:
    """Both rule sets, each cgroup path resolved once. ``file.unresolved`` lists every unresolved entry,
    ``net.unresolved`` only the network ones."""
    b = _Builder(source, strict, resolve_cgroup)
    net = _net_rules(policy, b)
    net = NetRuleSet(net.rules, dict(b.origins), net.unresolved)
    return RuleSets(_file_rules(policy, b, resolve), net)
