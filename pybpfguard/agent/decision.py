"""The file decision, once: what a rule set decides for one open or exec of an inode.

The order, as the ``file_open`` and ``bprm_check_security`` programs emit it (their shared steps are in
pybpfguard/agent/programs/deny.py) and the fanotify responder (pybpfguard/agent/file_guard.py) applies it:

1. no rule on the inode: ``deny_inode`` has no entry (or only bits this agent does not know) and
   ``deny_cgroup_inode`` has no entry for (opener's cgroup, inode) -> allow;
2. the inode is on the survival allowlist -> allow;
3. the opener's cgroup is in ``allow_cgroup`` and no cgroup-scoped rule matched -> allow (``allow_cgroup``
   exempts from global rules only: a cgroup-scoped rule names the very cgroup it denies);
4. the rule is protect-only (:data:`~pybpfguard.agent.maps.PROTECT_VERIFIED_EXEC` without
   :data:`~pybpfguard.agent.maps.DENY_ALWAYS`), no cgroup-scoped rule matched, and the opener is
   VERIFIED_EXEC -> allow;
5. effective mode audit -> report ``AUDIT`` and allow; enforce -> deny (``-EPERM``) with the configured
   signal (KILL escalates from TERM per process: :class:`pybpfguard.agent.file_guard.Escalation`).

A cgroup-scoped match is reported as :attr:`RuleKind.CGROUP_DENY_INODE` (also when a global rule matched
too). An opener whose cgroup is unknown (cgid 0) matches no cgroup-scoped rule.

VERIFIED_EXEC: no program computes it yet (``procs`` entries are written with ``flags`` 0), so every
tier passes ``verified_exec=False`` and a protect-only rule decides as DENY_ALWAYS does, the step-5
outcome for an unverified process. The policy-empty hint of the kernel programs is an optimisation of
step 1 (no rule at all) and has no separate case here.

Values only, no I/O: the fanotify responder calls :func:`decide_file` (policy ``simulate`` and ``explain``
are meant to); one table of cases holds the model, the fanotify tier and the BPF programs to the same
outcomes (tests/decision_table.py).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field
from typing import NamedTuple

from pybpfguard.agent.maps import DENY_ALWAYS, PROTECT_VERIFIED_EXEC
from pybpfguard.agent.options import EnforceSignal
from pybpfguard.agent.paths import InodeKey

__all__ = [
    "RULE_FLAGS",
    "AllowReason",
    "Decision",
    "FileRequest",
    "FileRules",
    "Mode",
    "Operation",
    "RuleKind",
    "Verdict",
    "decide_file",
    "rule_kind",
]

#: The ``deny_inode`` flag bits a rule is made of; other bits are ignored (by the kernel programs too).
RULE_FLAGS = DENY_ALWAYS | PROTECT_VERIFIED_EXEC


class Mode(enum.Enum):
    """Requested effective mode of the file hooks: audit reports a match and allows it, enforce denies it."""

    AUDIT = "audit"
    ENFORCE = "enforce"


class RuleKind(enum.Enum):
    """What a ``deny_inode`` entry asks (its u8 flags, pybpfguard/agent/maps.py)."""

    DENY_ALWAYS = DENY_ALWAYS
    PROTECT_VERIFIED_EXEC = PROTECT_VERIFIED_EXEC  # deny unless the opener is VERIFIED_EXEC
    # exec rules (pybpfguard/agent/execdecision.py): not deny_inode bits, so text values
    DENY_COMM = "deny_comm"  # the executable's basename is in deny_comm
    NOT_ALLOWLISTED = "not_allowlisted"  # allowlist mode and the executable's inode is not in allow_exec_inode
    CGROUP_DENY_INODE = "cgroup_deny_inode"  # a deny_cgroup_inode entry: no flag bit, so a text value


class Operation(enum.Enum):
    """What the opener does with the inode: both follow the same order."""

    OPEN = "open"
    EXEC = "exec"


class Verdict(enum.Enum):
    ALLOW = "allow"
    AUDIT = "audit"  # a rule matched in audit mode: reported, allowed
    DENY = "deny"


class AllowReason(enum.Enum):
    """Why an open was allowed (steps 1-4 of the order)."""

    NO_RULE = "no_rule"
    SURVIVAL = "survival"
    ALLOW_CGROUP = "allow_cgroup"
    VERIFIED_EXEC = "verified_exec"


def rule_kind(flags: int) -> RuleKind | None:
    """The rule a ``deny_inode`` value holds: DENY_ALWAYS wins over protect-only; None for no rule."""
    if flags & DENY_ALWAYS:
        return RuleKind.DENY_ALWAYS
    if flags & PROTECT_VERIFIED_EXEC:
        return RuleKind.PROTECT_VERIFIED_EXEC
    return None


@dataclass(frozen=True, slots=True)
class FileRules:
    """One complete rule set: ``deny`` ``{(ino, dev): u8 flags}`` (``deny_inode``), ``allow_cgroups`` cgids
    (``allow_cgroup``), ``survival`` inode keys (``survival_allowlist``), ``cgroup_deny``
    ``{(cgid, (ino, dev))}`` (``deny_cgroup_inode``); dev in kernel encoding."""

    deny: Mapping[InodeKey, int]
    allow_cgroups: Set[int]
    survival: Set[InodeKey]
    cgroup_deny: Set[tuple[int, InodeKey]] = frozenset()
    # cgroup_deny by inode, built once: the responder then looks up the key it has, allocating no tuple
    _cgids_by_key: Mapping[InodeKey, frozenset[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_key: dict[InodeKey, set[int]] = {}
        for cgid, key in self.cgroup_deny:
            by_key.setdefault(key, set()).add(cgid)
        object.__setattr__(self, "_cgids_by_key", {k: frozenset(v) for k, v in by_key.items()})

    def cgroup_denied(self, cgid: int, key: InodeKey) -> bool:
        """Whether ``deny_cgroup_inode`` has (*cgid*, *key*)."""
        cgids = self._cgids_by_key.get(key)
        return cgids is not None and cgid in cgids


class FileRequest(NamedTuple):
    """One open or exec: the inode ``key`` (ino, dev), the opener's ``cgid`` (0 when unknown: no cgroup
    exemption applies) and whether it is VERIFIED_EXEC. A NamedTuple: the responder builds one per
    permission event, and a frozen dataclass costs about twice as much to build."""

    key: InodeKey
    cgid: int = 0
    verified_exec: bool = False
    op: Operation = Operation.OPEN


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome: ``verdict``; ``reason`` for ALLOW; ``rule`` that matched (None when no rule);
    ``signal`` to send for DENY (the configured one; EnforceSignal.NONE sends none)."""

    verdict: Verdict
    reason: AllowReason | None = None
    rule: RuleKind | None = None
    signal: EnforceSignal | None = None

    @property
    def matched(self) -> bool:
        """A rule applied and was reported (``block_stats.blocks`` counts it): AUDIT or DENY."""
        return self.verdict is not Verdict.ALLOW


# Decisions are few and immutable: built once, indexed by the rule bits (``flags & RULE_FLAGS``) plus
# _SCOPED for a cgroup-scoped match, so the responder allocates none and hashes no enum per event.
_SCOPED = RULE_FLAGS + 1


def _kind_at(index: int) -> RuleKind | None:
    return RuleKind.CGROUP_DENY_INODE if index & _SCOPED else rule_kind(index)


def _by_bits(make: Callable[[RuleKind], Decision]) -> tuple[Decision, ...]:
    return tuple(_NO_RULE if (kind := _kind_at(index)) is None else make(kind) for index in range(2 * _SCOPED))


_NO_RULE = Decision(Verdict.ALLOW, AllowReason.NO_RULE)
_SURVIVAL = _by_bits(lambda kind: Decision(Verdict.ALLOW, AllowReason.SURVIVAL, kind))
_CGROUP = _by_bits(lambda kind: Decision(Verdict.ALLOW, AllowReason.ALLOW_CGROUP, kind))
_VERIFIED = _by_bits(lambda kind: Decision(Verdict.ALLOW, AllowReason.VERIFIED_EXEC, kind))
_AUDIT = _by_bits(lambda kind: Decision(Verdict.AUDIT, rule=kind))
_DENY = {sig: _by_bits(lambda kind, sig=sig: Decision(Verdict.DENY, rule=kind, signal=sig))  # type: ignore[misc]
         for sig in EnforceSignal}


def decide_file(rules: FileRules, req: FileRequest, mode: Mode,
                signal: EnforceSignal = EnforceSignal.NONE) -> Decision:
    """The decision for *req* under *rules* in effective *mode* (audit also when break-glass, emergency
    disable or ``audit_only`` force it: the ``agent_config`` switches the kernel programs read) with the
    configured *signal*."""
    key = req.key
    bits = rules.deny.get(key, 0) & RULE_FLAGS
    cgids = rules._cgids_by_key.get(key)
    if cgids is not None and req.cgid in cgids:  # cgroup-scoped: allow_cgroup and VERIFIED_EXEC do not exempt
        index = bits | _SCOPED
        if key in rules.survival:
            return _SURVIVAL[index]
    else:
        if not bits:
            return _NO_RULE
        if key in rules.survival:
            return _SURVIVAL[bits]
        if req.cgid in rules.allow_cgroups:
            return _CGROUP[bits]
        if bits == PROTECT_VERIFIED_EXEC and req.verified_exec:  # protect-only: rule_kind's reading of the bits
            return _VERIFIED[bits]
        index = bits
    if mode is Mode.AUDIT:
        return _AUDIT[index]
    return _DENY[signal][index]
