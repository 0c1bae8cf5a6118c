"""The exec decision of ``[deny_comm]`` and allowlist mode (``[allow_binary_hash]``), once.

For one exec of an executable inode (docs/policy.md "Binary hashes and exec rules on the host"):

1. no exec rule applies (the basename is not in ``deny_comm``; allowlist mode is off, or the inode is in
   ``allow_exec_inode``) -> allow;
2. the inode is on the survival allowlist -> allow;
3. the caller's cgroup is in ``allow_cgroup`` -> allow;
4. effective mode audit -> ``AUDIT`` and allow; enforce -> deny (``-EPERM``).

The rule, when both match: ``deny_comm`` (:attr:`RuleKind.DENY_COMM`) before allowlist mode
(:attr:`RuleKind.NOT_ALLOWLISTED`). A basename of 16 bytes or more never matches ``deny_comm`` (its key is
15 bytes and a NUL, as in the ``bprm_check_security`` program). Signals: a ``deny_comm`` denial sends none,
as ``bprm_check_security`` does (pybpfguard/agent/programs/exec_lsm.py); a not-allowlisted exec is denied
with the configured signal, like a denied executable.

Values only, no I/O, the outcomes in the types of :mod:`pybpfguard.agent.decision`; one table of cases
(tests/exec_decision_table.py) holds it. The fanotify tier (pybpfguard/agent/exec_guard.py) calls it.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import NamedTuple

from pybpfguard.agent.decision import AllowReason, Decision, Mode, RuleKind, Verdict
from pybpfguard.agent.options import EnforceSignal
from pybpfguard.agent.paths import InodeKey

__all__ = ["COMM_MAX_BYTES", "ExecRequest", "ExecRules", "decide_exec", "exec_rule"]

COMM_MAX_BYTES = 15  # TASK_COMM_LEN - 1 (include/linux/sched.h): a deny_comm key is the name and a NUL


@dataclass(frozen=True, slots=True)
class ExecRules:
    """One complete exec rule set.

    ``deny_comm``: basenames (1..15 bytes) whose exec is denied (``deny_comm``); ``allow_exec``: the inode
    keys ``(ino, dev)`` of allowlist mode (``allow_exec_inode``, dev in kernel encoding); ``allowlist``:
    allowlist mode is on (``[allow_binary_hash]`` present; flag ALLOWLIST_ENFORCE), so every exec of an
    inode not in ``allow_exec`` is a match; ``allow_cgroups``: exempt cgids, anything answering
    ``cgid in allow_cgroups`` (a frozenset read from ``allow_cgroup``; a test may pass a container that
    exempts every cgroup but its own child's); ``survival``: inode keys no rule may deny."""

    deny_comm: frozenset[bytes] = frozenset()
    allow_exec: frozenset[InodeKey] = frozenset()
    allowlist: bool = False
    allow_cgroups: Container[int] = frozenset()
    survival: frozenset[InodeKey] = frozenset()

    @property
    def active(self) -> bool:
        """Some exec rule can match: a ``deny_comm`` entry, or allowlist mode."""
        return bool(self.deny_comm) or self.allowlist


class ExecRequest(NamedTuple):
    """One exec: the executable's inode ``key`` (ino, dev), its ``name`` (basename, bytes) and the caller's
    ``cgid`` (0 when unknown: no cgroup exemption applies)."""

    key: InodeKey
    name: bytes
    cgid: int = 0


def exec_rule(rules: ExecRules, key: InodeKey, name: bytes) -> RuleKind | None:
    """The exec rule *key* / *name* match under *rules* (step 1 of the order), or None."""
    if len(name) <= COMM_MAX_BYTES and name in rules.deny_comm:
        return RuleKind.DENY_COMM
    if rules.allowlist and key not in rules.allow_exec:
        return RuleKind.NOT_ALLOWLISTED
    return None


_NO_RULE = Decision(Verdict.ALLOW, AllowReason.NO_RULE)
_ALLOWED = {(reason, kind): Decision(Verdict.ALLOW, reason, kind)
            for reason in (AllowReason.SURVIVAL, AllowReason.ALLOW_CGROUP)
            for kind in (RuleKind.DENY_COMM, RuleKind.NOT_ALLOWLISTED)}
_AUDIT = {kind: Decision(Verdict.AUDIT, rule=kind) for kind in (RuleKind.DENY_COMM, RuleKind.NOT_ALLOWLISTED)}
_DENY_COMM = Decision(Verdict.DENY, rule=RuleKind.DENY_COMM, signal=EnforceSignal.NONE)
_NOT_ALLOWLISTED = {sig: Decision(Verdict.DENY, rule=RuleKind.NOT_ALLOWLISTED, signal=sig) for sig in EnforceSignal}


def decide_exec(rules: ExecRules, req: ExecRequest, mode: Mode,
                signal: EnforceSignal = EnforceSignal.NONE) -> Decision:
    """The decision for *req* under *rules* in effective *mode* with the configured *signal* (used for a
    not-allowlisted exec only; a ``deny_comm`` denial carries EnforceSignal.NONE)."""
    kind = exec_rule(rules, req.key, req.name)
    if kind is None:
        return _NO_RULE
    if req.key in rules.survival:
        return _ALLOWED[AllowReason.SURVIVAL, kind]
    if req.cgid in rules.allow_cgroups:
        return _ALLOWED[AllowReason.ALLOW_CGROUP, kind]
    if mode is Mode.AUDIT:
        return _AUDIT[kind]
    return _DENY_COMM if kind is RuleKind.DENY_COMM else _NOT_ALLOWLISTED[signal]
