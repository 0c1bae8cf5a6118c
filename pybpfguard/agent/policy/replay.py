"""Events replayed against a policy's rule sets: what ``simulate`` counts and ``explain`` tells (docs/policy.md).

An event line (docs/events.md) is read into the agent's own event Struct (strictly: every required field,
no unknown one), turned into the request the enforcement path decides on, and decided by the same models:
:func:`~pybpfguard.agent.decision.decide_file` for ``block``, :func:`~pybpfguard.agent.netdecision.decide_net`
for ``net_*_block``, always in enforce mode (the question is what the policy would block).

A ``block`` event is decided on its inode first; when no inode rule matches, a ``deny_path`` or
``protect_path`` naming the event's ``path``/``resolved_path`` is decided on that inode the same way (the
file at that path now is what the policy would deny, even if the event saw an older inode). A ``block``
with ``ino`` 0 and ``dev`` 0 is a ``deny_comm`` denial, decided by
:func:`~pybpfguard.agent.execdecision.decide_exec` on the basename of its ``path``.
``cgroup_deny_inode`` is checked together with the global rules and is not exempted by ``allow_cgroup``.
A ``deny_binary_hash`` is checked on the event's file (:func:`host_hash`) where apply's scan would find it.
What an event does not carry is assumed: the process is not VERIFIED_EXEC, the opened inode is not on
the survival allowlist (that list is the host's, not the policy's).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import ipaddress
import os
import socket
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pybpfguard.agent.decision import AllowReason, Decision, FileRequest, FileRules, Mode, RuleKind, decide_file
from pybpfguard.agent.events.model import BY_TAG, NET_TYPES, Action, strict_class
from pybpfguard.agent.execdecision import ExecRequest, ExecRules, decide_exec, exec_rule
from pybpfguard.agent.maps import DENY_ALWAYS, PROTECT_VERIFIED_EXEC
from pybpfguard.agent.netdecision import (
    Hook,
    NetAllowReason,
    NetDecision,
    NetRequest,
    NetRules,
    NetRuleType,
    decide_net,
)
from pybpfguard.agent.paths import InodeKey, inode_key
from pybpfguard.agent.policy.hashscan import hash_file, scan_roots
from pybpfguard.agent.policy.model import Entry, Policy, Section, SectionKind
from pybpfguard.agent.policy.ruleset import RuleSets, Unresolved

__all__ = [
    "ALL_SECTIONS",
    "FILE_SECTIONS",
    "NET_SECTIONS",
    "Counts",
    "Explanation",
    "HashOf",
    "Outcome",
    "ReadEvent",
    "Replayed",
    "explain",
    "host_hash",
    "not_simulated",
    "read_event",
    "read_events",
    "replay",
    "rule_text",
    "unresolved_text",
]

BLOCK_TYPE = "block"
_STRICT = {tag: strict_class(BY_TAG[tag]) for tag in (BLOCK_TYPE, *NET_TYPES)}
_PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
_FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}

#: The sections explain reports on, per event kind, in decision order.
FILE_SECTIONS = (Section.ALLOW_CGROUP, Section.CGROUP_DENY_INODE, Section.DENY_PATH, Section.PROTECT_PATH,
                 Section.DENY_INODE, Section.DENY_BINARY_HASH, Section.DENY_COMM)
NET_SECTIONS = (Section.ALLOW_CGROUP, Section.PROTECT_CONNECT, Section.DENY_IP_PORT, Section.DENY_IP,
                Section.DENY_CIDR, Section.DENY_PORT, Section.CGROUP_DENY_IP, Section.CGROUP_DENY_PORT)
#: Every section explain reports on (the ``matches`` keys of its JSON).
ALL_SECTIONS = (*FILE_SECTIONS, *NET_SECTIONS[1:])
#: NetRules field holding each network section's keys.
_NET_FIELDS = {Section.DENY_IP_PORT: "ip_ports", Section.DENY_IP: "ips", Section.DENY_CIDR: "cidrs",
               Section.DENY_PORT: "ports", Section.CGROUP_DENY_IP: "cgroup_ips",
               Section.CGROUP_DENY_PORT: "cgroup_ports", Section.PROTECT_CONNECT: "protect_connect"}
_RULE_SECTIONS = {NetRuleType.IP_PORT: Section.DENY_IP_PORT, NetRuleType.IP: Section.DENY_IP,
                  NetRuleType.CIDR: Section.DENY_CIDR, NetRuleType.PORT: Section.DENY_PORT,
                  NetRuleType.CG_IP: Section.CGROUP_DENY_IP, NetRuleType.CG_PORT: Section.CGROUP_DENY_PORT,
                  NetRuleType.IDENTITY: Section.PROTECT_CONNECT}


HashOf = Callable[[bytes, InodeKey, tuple[bytes, ...]], "bytes | None"]
"""(event path, its inode key, the directories apply's scan walks) -> the SHA-256 the scan would find for
that inode, or None (not under those directories, no longer that inode, unreadable)."""


def host_hash(path: bytes, key: InodeKey, scan_dirs: tuple[bytes, ...]) -> bytes | None:
    """:data:`HashOf` on this host: the file's directory, resolved, must lie under one of *scan_dirs*
    (canonical, as :func:`~pybpfguard.agent.policy.hashscan.scan_roots` gives them), and *path* must still
    be the regular file *key*; hashed with the scan's own checks
    (:func:`~pybpfguard.agent.policy.hashscan.hash_file`)."""
    parent = os.path.realpath(os.path.dirname(path))
    if not any(parent == d or parent.startswith(d.rstrip(b"/") + b"/") for d in scan_dirs):
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or inode_key(st) != key:
        return None
    got = hash_file(path, key, st.st_size, st.st_mtime_ns)
    return got[0] if isinstance(got, tuple) else None


class Outcome(enum.Enum):
    """What one event line comes to under the candidate policy (the ``simulate`` counters)."""

    WOULD_BLOCK_INODE = "would_block_inode"  # a file rule matches the event's inode
    WOULD_BLOCK_PATH = "would_block_path"  # no inode rule; a path rule names the event's path
    WOULD_BLOCK_COMM = "would_block_comm"  # a deny_comm exec denial
    WOULD_BLOCK_NET = "would_block_net"  # a network rule matches
    WOULD_ALLOW = "would_allow"  # a rule matches, and an exemption (allow_cgroup, VERIFIED_EXEC) allows it
    NO_MATCH = "no_match"
    SKIPPED_NON_BLOCK = "skipped_non_block"  # a valid JSON object of another event type
    SKIPPED_INVALID = "skipped_invalid"  # not JSON, not an object, or not a valid block/net event

    @property
    def blocks(self) -> bool:
        return self in _BLOCKING


_BLOCKING = frozenset({Outcome.WOULD_BLOCK_INODE, Outcome.WOULD_BLOCK_PATH, Outcome.WOULD_BLOCK_COMM,
                       Outcome.WOULD_BLOCK_NET})


@dataclass(frozen=True, slots=True)
class ReadEvent:
    """One line: its number, the event Struct (None when skipped) and why it was skipped."""

    line: int
    event: msgspec.Struct | None
    skipped: Outcome | None = None
    reason: str = ""


def read_event(data: bytes | str, line: int = 1) -> ReadEvent:
    """One JSON text -> a ``block``/``net_*_block`` event Struct, or the reason it is skipped."""
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError as err:
        return ReadEvent(line, None, Outcome.SKIPPED_INVALID, f"not JSON: {err}")
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return ReadEvent(line, None, Outcome.SKIPPED_INVALID, "not a JSON object with a string 'type'")
    cls = _STRICT.get(obj["type"])
    if cls is None:
        return ReadEvent(line, None, Outcome.SKIPPED_NON_BLOCK, f"event type {obj['type']!r}")
    try:
        event = msgspec.convert(obj, type=cls)
    except msgspec.ValidationError as err:
        return ReadEvent(line, None, Outcome.SKIPPED_INVALID, f"not a valid {obj['type']} event: {err}")
    if obj["type"] != BLOCK_TYPE:
        try:
            _net_request(event)
        except ValueError as err:
            return ReadEvent(line, None, Outcome.SKIPPED_INVALID, f"not a valid {obj['type']} event: {err}")
    return ReadEvent(line, event)


def read_events(lines: Iterable[bytes]) -> Iterator[ReadEvent]:
    """JSON lines -> events; blank lines are passed over (and counted for line numbers)."""
    for number, raw in enumerate(lines, 1):
        if raw.strip():
            yield read_event(raw, number)


def _net_request(event: Any) -> NetRequest:
    """A ``net_*_block`` event -> the request its hook decided. Raises ValueError for a protocol or an
    address that is neither a name of docs/events.md nor a number."""
    hook = Hook(_tag(event)[len("net_"):-len("_block")])
    proto = _PROTOCOLS.get(event.protocol)
    if proto is None:
        if not (event.protocol.isascii() and event.protocol.isdigit()) or int(event.protocol) > 255:
            raise ValueError(f"protocol {event.protocol!r} is not tcp, udp or a number 0-255")
        proto = int(event.protocol)
    remote = None
    if isinstance(event.remote_ip, str):
        try:
            remote = ipaddress.ip_address(event.remote_ip)
        except ValueError:
            raise ValueError(f"remote_ip {event.remote_ip!r} is not an IP address") from None
    port = event.remote_port if isinstance(event.remote_port, int) else 0
    local = event.local_port if isinstance(event.local_port, int) else 0
    return NetRequest(hook, _FAMILIES[event.family], proto, remote, port, local, event.cgid)


def _tag(event: msgspec.Struct) -> str:
    return event.__struct_config__.tag  # type: ignore[return-value]


def _text(event: Any, name: str) -> bytes | None:
    """A text field as the raw bytes the kernel gave: its ``_b64`` sibling when there is one (and it is
    base64), else the text."""
    b64 = getattr(event, f"{name}_b64", None)
    if isinstance(b64, str):
        try:
            return base64.b64decode(b64, validate=True)
        except ValueError:  # binascii.Error, or text that is not ASCII at all
            pass  # not what the agent writes: the text is all there is
    value = getattr(event, name, None)
    return os.fsencode(value) if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class Replayed:
    """One event decided: ``outcome``; ``rule`` (section, entry) that decided it, when a rule did;
    ``decision`` (the model's Decision or NetDecision)."""

    line: int
    event_type: str
    outcome: Outcome
    rule: tuple[Section, Entry | None] | None = None
    decision: Decision | NetDecision | None = None
    reason: str = ""


@dataclass
class Counts:
    """The ``simulate`` counters. ``would_block`` is the sum of the ``would_block_*`` ones."""

    values: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))

    def add(self, outcome: Outcome) -> None:
        self.values[outcome] += 1

    def as_dict(self) -> dict[str, int]:
        v = self.values
        out = {"would_block": sum(n for o, n in v.items() if o.blocks)}
        out.update({o.value: n for o, n in v.items()})
        return out


class _Context:
    """A rule set prepared for replay: the allow set per event, the per-section rules for explain."""

    def __init__(self, sets: RuleSets, policy: Policy, hash_of: HashOf) -> None:
        self.sets = sets
        self.policy = policy
        self.hash_of = hash_of
        self._digests: dict[InodeKey, bytes | None] = {}
        self._scan_dirs: tuple[bytes, ...] | None = None
        origins = sets.file.origins
        self.section_inodes: dict[Section, dict[InodeKey, int]] = {}
        for (section, key), _entry in origins.items():
            if isinstance(key, tuple) and section in (Section.DENY_PATH, Section.PROTECT_PATH, Section.DENY_INODE):
                flag = PROTECT_VERIFIED_EXEC if section is Section.PROTECT_PATH else DENY_ALWAYS
                self.section_inodes.setdefault(section, {})[key] = flag  # type: ignore[index]

    def allowed(self, cgid: int, cgroup_path: bytes | None) -> frozenset[int] | None:
        """The allow set for an event whose cgroup is named only by an unresolved ``allow_cgroup`` path
        (None: the rule sets' own)."""
        if cgroup_path is not None and cgroup_path in self.sets.file.cgroup_paths:
            return frozenset(self.sets.file.rules.allow_cgroups) | {cgid}
        return None

    def file_rules(self, event: Any) -> FileRules:
        rules = self.sets.file.rules
        extra = self.allowed(event.cgid, _text(event, "cgroup_path"))
        return rules if extra is None else dataclasses.replace(rules, allow_cgroups=extra)

    def net_rules(self, event: Any) -> NetRules:
        rules = self.sets.net.rules
        extra = self.allowed(event.cgid, _text(event, "cgroup_path"))
        return rules if extra is None else dataclasses.replace(rules, allow_cgroups=extra)

    def hash_rule(self, event: Any, key: InodeKey) -> tuple[Section, Entry | None] | None:
        """The ``deny_binary_hash`` entry apply's scan would turn into a rule on *key*: the event's file,
        hashed once per inode, when it lies under a scanned root and still is that inode."""
        hashes = self.sets.file.deny_hashes
        path = _text(event, "path")
        if not hashes or path is None:
            return None
        if key not in self._digests:
            if self._scan_dirs is None:
                self._scan_dirs = scan_roots(self.sets.file.scan_roots)[0]
            self._digests[key] = self.hash_of(path, key, self._scan_dirs)
        digest = self._digests[key]
        if digest is None or digest not in hashes:
            return None
        return Section.DENY_BINARY_HASH, self.entry(Section.DENY_BINARY_HASH, digest)

    def exec_rules(self, rules: FileRules) -> ExecRules:
        """The policy's ``deny_comm`` with *rules*' exemptions (allowlist mode is not simulated)."""
        return ExecRules(deny_comm=self.sets.file.comms, allow_cgroups=rules.allow_cgroups)

    def entry(self, section: Section, key: object) -> Entry | None:
        return self.sets.file.origins.get((section, key)) or self.sets.net.origins.get((section, key))  # type: ignore[arg-type]

    def flag_entry(self, section: Section) -> Entry | None:
        line = self.policy.flags.get(section)
        return Entry(line, f"[{section.value}]", b"") if line is not None else None


def _file_key(event: Any) -> InodeKey:
    return (event.ino, event.dev)


def _basename(event: Any) -> bytes:
    """The exec'd file's basename: a ``deny_comm`` denial's ``path`` is the exec'd filename."""
    return (_text(event, "path") or b"").rpartition(b"/")[2]


def _path_rule(ctx: _Context, event: Any) -> tuple[bytes, int] | None:
    """The first of the event's ``path``, ``resolved_path`` that a path rule names, with its flags."""
    for name in ("path", "resolved_path"):
        path = _text(event, name)
        if path is not None and path in ctx.sets.file.paths:
            return path, ctx.sets.file.paths[path]
    return None


def _inode_entry(ctx: _Context, key: InodeKey) -> tuple[Section, Entry | None]:
    for section in (Section.DENY_PATH, Section.PROTECT_PATH, Section.DENY_INODE):
        entry = ctx.entry(section, key)
        if entry is not None:
            return section, entry
    return Section.DENY_INODE, None


def _path_entry(ctx: _Context, path: bytes) -> tuple[Section, Entry | None]:
    for section in (Section.DENY_PATH, Section.PROTECT_PATH):
        entry = ctx.entry(section, path)
        if entry is not None:
            return section, entry
    return Section.DENY_PATH, None


def _replay_block(ctx: _Context, line: int, event: Any) -> Replayed:
    rules = ctx.file_rules(event)
    key = _file_key(event)
    tag = BLOCK_TYPE
    if key == (0, 0):  # a deny_comm exec denial: decided on the exec'd file's basename
        name = _basename(event)
        d = decide_exec(ctx.exec_rules(rules), ExecRequest(key, name, event.cgid), Mode.ENFORCE)
        if d.reason is AllowReason.NO_RULE:
            return Replayed(line, tag, Outcome.NO_MATCH, None, d)
        rule = (Section.DENY_COMM, ctx.entry(Section.DENY_COMM, name))
        if d.matched:
            return Replayed(line, tag, Outcome.WOULD_BLOCK_COMM, rule, d)
        return Replayed(line, tag, Outcome.WOULD_ALLOW, rule, d, d.reason.value)  # type: ignore[union-attr]
    req = FileRequest(key, event.cgid)
    d = decide_file(rules, req, Mode.ENFORCE)
    if d.matched:
        rule = ((Section.CGROUP_DENY_INODE, ctx.entry(Section.CGROUP_DENY_INODE, (event.cgid, key)))
                if d.rule is RuleKind.CGROUP_DENY_INODE else _inode_entry(ctx, key))
        return Replayed(line, tag, Outcome.WOULD_BLOCK_INODE, rule, d)
    if d.reason is not AllowReason.NO_RULE:
        return Replayed(line, tag, Outcome.WOULD_ALLOW, _inode_entry(ctx, key), d, d.reason.value)  # type: ignore[union-attr]
    hashed = ctx.hash_rule(event, key)
    if hashed is not None:  # apply would put the inode in deny_inode
        return _decided_as(line, rules, req, DENY_ALWAYS, hashed, Outcome.WOULD_BLOCK_INODE)
    hit = _path_rule(ctx, event)
    if hit is None:
        return Replayed(line, tag, Outcome.NO_MATCH, None, d)
    path, flags = hit
    return _decided_as(line, rules, req, flags, _path_entry(ctx, path), Outcome.WOULD_BLOCK_PATH)


def _decided_as(line: int, rules: FileRules, req: FileRequest, flags: int, rule: tuple[Section, Entry | None],
                blocked: Outcome) -> Replayed:
    """A rule found for the event's inode outside ``rules.deny`` (a path rule, a binary hash), decided by
    the file model as if it were that inode's ``deny_inode`` entry: the file at that path, or with that
    hash, is what the policy denies."""
    d = decide_file(dataclasses.replace(rules, deny={req.key: flags}), req, Mode.ENFORCE)
    if d.matched:
        return Replayed(line, BLOCK_TYPE, blocked, rule, d)
    return Replayed(line, BLOCK_TYPE, Outcome.WOULD_ALLOW, rule, d, d.reason.value)  # type: ignore[union-attr]


def _replay_net(ctx: _Context, line: int, event: Any) -> Replayed:
    tag = _tag(event)
    d = decide_net(ctx.net_rules(event), _net_request(event), Mode.ENFORCE)
    if d.matched:
        assert d.rule_type is not None
        section = _RULE_SECTIONS[d.rule_type]
        entry = ctx.flag_entry(section) if d.rule_type is NetRuleType.IDENTITY else ctx.entry(section, d.key)
        return Replayed(line, tag, Outcome.WOULD_BLOCK_NET, (section, entry), d)
    if d.reason is NetAllowReason.ALLOW_CGROUP:
        # an exemption counts as would_allow only when a rule would otherwise have matched
        unexempt = decide_net(dataclasses.replace(ctx.net_rules(event), allow_cgroups=frozenset()),
                              _net_request(event), Mode.ENFORCE)
        if unexempt.matched:
            return Replayed(line, tag, Outcome.WOULD_ALLOW, (Section.ALLOW_CGROUP,
                                                             ctx.entry(Section.ALLOW_CGROUP, event.cgid)), d,
                            d.reason.value)
    return Replayed(line, tag, Outcome.NO_MATCH, None, d, d.reason.value if d.reason else "")


def replay(sets: RuleSets, policy: Policy, events: Iterable[ReadEvent], hash_of: HashOf | None = None
           ) -> Iterator[Replayed]:
    """Each read event decided under *sets* (made from *policy*); skipped lines pass through. *hash_of*
    checks an event's file against ``deny_binary_hash`` (default :func:`host_hash`)."""
    ctx = _Context(sets, policy, hash_of or host_hash)
    for read in events:
        if read.event is None:
            assert read.skipped is not None
            yield Replayed(read.line, "", read.skipped, reason=read.reason)
        elif _tag(read.event) == BLOCK_TYPE:
            yield _replay_block(ctx, read.line, read.event)
        else:
            yield _replay_net(ctx, read.line, read.event)


# --- explain -----------------------------------------------------------------------------------------------


@dataclass
class Explanation:
    """``explain``'s answer: per section, the entries that match the event on their own (``matches``);
    ``outcome`` and ``inferred_rule`` (the entry that decides, in decision order); ``notes``."""

    event_type: str
    outcome: Outcome
    matches: dict[Section, list[Entry]]
    inferred_rule: tuple[Section, Entry | None] | None
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "outcome": self.outcome.value,
            "matches": {s.value: bool(self.matches.get(s)) for s in ALL_SECTIONS},
            "matched_entries": [{"section": s.value, "line": e.line, "text": e.text}
                                for s, es in self.matches.items() for e in es],
            "inferred_rule": rule_text(self.inferred_rule),
            "notes": self.notes,
        }


def rule_text(rule: tuple[Section, Entry | None] | None) -> str | None:
    """``[section] entry (line N)``; for a flag section ``[section] (line N)``."""
    if rule is None:
        return None
    section, entry = rule
    if entry is None:
        return f"[{section.value}]"
    if section.kind is SectionKind.FLAG:
        return f"[{section.value}] (line {entry.line})"
    return f"[{section.value}] {entry.text} (line {entry.line})"


def _file_matches(ctx: _Context, event: Any) -> dict[Section, list[Entry]]:
    """Each file section on its own, decided by the file model with no exemption."""
    key = _file_key(event)
    matches: dict[Section, list[Entry]] = {s: [] for s in FILE_SECTIONS}
    req = FileRequest(key, event.cgid)
    no_exemption = FileRules({}, frozenset(), frozenset())
    for section in (Section.DENY_PATH, Section.PROTECT_PATH, Section.DENY_INODE):
        deny = ctx.section_inodes.get(section, {})
        if key in deny and decide_file(dataclasses.replace(no_exemption, deny={key: deny[key]}), req,
                                       Mode.ENFORCE).matched:
            matches[section].append(ctx.entry(section, key))  # type: ignore[arg-type]
    for name in ("path", "resolved_path"):
        path = _text(event, name)
        for section in (Section.DENY_PATH, Section.PROTECT_PATH):
            entry = ctx.entry(section, path) if path is not None else None
            if entry is not None and entry not in matches[section]:
                matches[section].append(entry)
    if (hashed := ctx.hash_rule(event, key)) is not None and hashed[1] is not None:
        matches[Section.DENY_BINARY_HASH].append(hashed[1])
    entry = ctx.entry(Section.CGROUP_DENY_INODE, (event.cgid, key))
    if entry is not None:
        matches[Section.CGROUP_DENY_INODE].append(entry)
    if key == (0, 0):
        name = _basename(event)
        if exec_rule(ctx.exec_rules(no_exemption), key, name) is RuleKind.DENY_COMM:
            matches[Section.DENY_COMM].append(ctx.entry(Section.DENY_COMM, name))  # type: ignore[arg-type]
    return matches


def _net_matches(ctx: _Context, event: Any) -> dict[Section, list[Entry]]:
    """Each network section on its own: the network model run on a rule set of that section alone."""
    matches: dict[Section, list[Entry]] = {s: [] for s in NET_SECTIONS}
    req = _net_request(event)
    rules = ctx.sets.net.rules
    for section, name in _NET_FIELDS.items():
        only = NetRules(**{name: getattr(rules, name)})
        d = decide_net(only, req, Mode.ENFORCE)
        if d.matched:
            entry = ctx.flag_entry(section) if section is Section.PROTECT_CONNECT else ctx.entry(section, d.key)
            if entry is not None:
                matches[section].append(entry)
    return matches


def _allow_entry(ctx: _Context, event: Any) -> Entry | None:
    entry = ctx.entry(Section.ALLOW_CGROUP, event.cgid)
    if entry is None and ctx.allowed(event.cgid, _text(event, "cgroup_path")) is not None:
        path = _text(event, "cgroup_path")
        entry = next((e for e in ctx.policy.entries(Section.ALLOW_CGROUP)
                      if getattr(e.value, "path", None) == path), None)
    return entry


def explain(sets: RuleSets, policy: Policy, event: msgspec.Struct, hash_of: HashOf | None = None) -> Explanation:
    """Why *event* would (or would not) happen under *policy*: each section that matches it, the entry
    that decides in decision order, and notes on what the event leaves open."""
    ctx = _Context(sets, policy, hash_of or host_hash)
    tag = _tag(event)
    ev: Any = event
    replayed = _replay_block(ctx, 1, ev) if tag == BLOCK_TYPE else _replay_net(ctx, 1, ev)
    matches = _file_matches(ctx, ev) if tag == BLOCK_TYPE else _net_matches(ctx, ev)
    allow = _allow_entry(ctx, ev)
    if allow is not None:
        matches[Section.ALLOW_CGROUP].append(allow)
    notes = _notes(ctx, ev, tag, replayed, matches)
    return Explanation(tag, replayed.outcome, matches, replayed.rule, notes)


def _notes(ctx: _Context, ev: Any, tag: str, replayed: Replayed, matches: dict[Section, list[Entry]]) -> list[str]:
    notes: list[str] = []
    if ev.action is Action.AUDIT:
        notes.append("the event was reported in audit mode: the operation was allowed")
    if replayed.outcome is Outcome.WOULD_ALLOW:
        why = {"allow_cgroup": f"cgroup {ev.cgid} is in allow_cgroup, which exempts it from every global rule",
               "verified_exec": "the process is VERIFIED_EXEC, which protect-only rules exempt"}
        notes.append(why.get(replayed.reason, f"allowed: {replayed.reason}"))
    elif replayed.outcome is Outcome.NO_MATCH:
        notes.append("no rule of this policy matches the event: it would not be reported")
    if tag == BLOCK_TYPE:
        _file_notes(ctx, ev, replayed, matches, notes)
    else:
        _net_notes(ev, replayed, notes)
    if tag == BLOCK_TYPE:
        notes.extend(not_simulated(ctx.policy))
    relevant = (*FILE_SECTIONS,) if tag == BLOCK_TYPE else NET_SECTIONS
    notes.extend(unresolved_text(u) for u in ctx.sets.file.unresolved if u.section in relevant)
    return notes


#: Sections whose rules simulate and explain cannot decide from an event: allowlist mode and IMA need to
#: know the event was an exec, and of what.
NOT_SIMULATED = (Section.ALLOW_BINARY_HASH, Section.TRUSTED_EXEC_HASH, Section.IMA_FAIL_CLOSED)


def not_simulated(policy: Policy) -> list[str]:
    """A note per section of *policy* that the replay does not decide, with its header line."""
    return [f"line {policy.section_lines.get(s, 0)}: [{s.value}] is not simulated: an event only it would deny "
            "counts as no_match" for s in NOT_SIMULATED if policy.has(s)]


def unresolved_text(u: Unresolved) -> str:
    """An entry that did not resolve on this host, and what that leaves of it."""
    effect = {Section.DENY_PATH: "it matches by path only", Section.PROTECT_PATH: "it matches by path only",
              Section.ALLOW_CGROUP: "it matches by the event's cgroup_path only"}.get(u.section, "it is left out")
    return (f"line {u.entry.line}: [{u.section.value}] {u.entry.text} does not resolve on this host "
            f"({u.reason}): {effect}")


def _file_notes(ctx: _Context, ev: Any, replayed: Replayed, matches: dict[Section, list[Entry]],
                notes: list[str]) -> None:
    if replayed.outcome is Outcome.WOULD_BLOCK_PATH:
        notes.append(f"the event's inode {ev.dev}:{ev.ino} is under no rule; its path is, so the file now at "
                     "that path is what the policy denies (the file was replaced, or the event saw another mount)")
    if matches[Section.PROTECT_PATH]:
        notes.append("protect_path denies only processes that are not VERIFIED_EXEC; events do not say, so the "
                     "process is taken as not verified")
    if getattr(ev, "path_truncated", None) is True:
        notes.append("the event's path was cut by the kernel: path rules may not match it")
    if (ev.ino, ev.dev) != (0, 0):
        notes.append("the survival allowlist (the host's, not the policy's) is not consulted")


def _net_notes(ev: Any, replayed: Replayed, notes: list[str]) -> None:
    d = replayed.decision
    if isinstance(d, NetDecision) and d.rule_type is not None and d.rule_type.value != ev.rule_type:
        notes.append(f"the event was reported for rule_type {ev.rule_type}; under this policy {d.rule_type.value} "
                     "matches first")
    if isinstance(ev.remote_ip, str) and ev.remote_ip.lower().startswith("::ffff:") and "." in ev.remote_ip:
        notes.append("the remote address is IPv4-mapped IPv6: it is checked against the IPv4 rules")
    if isinstance(d, NetDecision) and d.reason is NetAllowReason.NO_ADDRESS:
        notes.append("the event has no remote address: the hook fails open")
    if isinstance(d, NetDecision) and d.rule_type is NetRuleType.IDENTITY:
        notes.append("protect_connect denies every connect of a process that is not VERIFIED_EXEC; events do "
                     "not say, so the process is taken as not verified")
