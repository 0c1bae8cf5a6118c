"""The file decision as one table of cases: (rules, request) -> expected decision.

Every tier is held to it: the model itself (tests/test_decision.py), the kernel programs' decision steps
run with BPF_PROG_TEST_RUN (tests/program/test_decision_bpf.py), the fanotify responder end to end
(tests/guard/test_decision_table.py) and the LSM programs in the VM tier (tests/lsm/test_decision_lsm.py).
A case names the opener's cgroup and identity abstractly (``cgroup_allowed``, ``cgroup_rule``,
``verified_exec``): each tier puts its own opener's cgid into ``allow_cgroup`` and ``deny_cgroup_inode`` or not.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pybpfguard.agent.cgroups import cgroup2_mount
from pybpfguard.agent.decision import AllowReason, FileRequest, FileRules, Mode, Verdict
from pybpfguard.agent.maps import AGENT_CONFIG, CGROUP_INODE_KEY, DENY_ALWAYS, PROTECT_VERIFIED_EXEC
from pybpfguard.agent.paths import InodeKey
from pybpfguard.bpf.maps import Map

#: A flag bit that is no rule (decision.RULE_FLAGS): every tier ignores it.
UNKNOWN_FLAG = 0x80


class CgroupRule(enum.Enum):
    """Whether ``deny_cgroup_inode`` holds the opened inode, and for which cgroup."""

    NONE = "none"
    OPENER = "opener"  # (opener's cgid, inode)
    OTHER = "other"  # (another cgid, inode): the opener is not denied by it


@dataclass(frozen=True)
class Case:
    """``flags``: the ``deny_inode`` value of the opened inode (0: no entry); ``survival``: the inode is on
    the survival allowlist; ``cgroup_allowed``: the opener's cgroup is in ``allow_cgroup``; ``cgroup_rule``:
    the ``deny_cgroup_inode`` entry on the inode."""

    name: str
    flags: int
    mode: Mode
    expect: Verdict
    reason: AllowReason | None = None
    survival: bool = False
    cgroup_allowed: bool = False
    verified_exec: bool = False
    cgroup_rule: CgroupRule = CgroupRule.NONE

    def rule_cgid(self, opener_cgid: int) -> int | None:
        """The cgid of the case's ``deny_cgroup_inode`` entry (None: no entry)."""
        return {CgroupRule.NONE: None, CgroupRule.OPENER: opener_cgid, CgroupRule.OTHER: opener_cgid + 1}[
            self.cgroup_rule]

    def rules(self, key: InodeKey, opener_cgid: int) -> FileRules:
        cgid = self.rule_cgid(opener_cgid)
        return FileRules({key: self.flags} if self.flags else {},
                         frozenset({opener_cgid} if self.cgroup_allowed else ()),
                         frozenset({key} if self.survival else ()),
                         frozenset() if cgid is None else frozenset({(cgid, key)}))

    def request(self, key: InodeKey, opener_cgid: int) -> FileRequest:
        return FileRequest(key, opener_cgid, self.verified_exec)

    def load_maps(self, maps: Mapping[str, Map], key: Any, opener_cgid: int) -> None:
        """Write the case into the kernel programs' maps (emptied first): the rule on *key* (an INODE_KEY
        value), ``deny_cgroup_inode`` (when *maps* has it), survival, ``allow_cgroup`` and ``agent_config``
        (mode; signal none, since the opener may be the test process itself)."""
        for name in ("deny_inode", "survival_allowlist", "allow_cgroup", "deny_cgroup_inode"):
            for k in list(maps[name].keys()) if name in maps else ():
                maps[name].delete_elem(k)
        if self.flags:
            maps["deny_inode"].update_elem(key, self.flags)
        if (cgid := self.rule_cgid(opener_cgid)) is not None:
            maps["deny_cgroup_inode"].update_elem(CGROUP_INODE_KEY.value(cgid=cgid, ino=key.ino, dev=key.dev, pad=0), 1)
        if self.survival:
            maps["survival_allowlist"].update_elem(key, 1)
        if self.cgroup_allowed:
            maps["allow_cgroup"].update_elem(opener_cgid, 1)
        maps["agent_config"].update_elem(0, AGENT_CONFIG.value(
            audit_only=int(self.mode is Mode.AUDIT), enforce_signal=0, event_sample_rate=1,
            file_policy_empty=int(not self.flags and self.cgroup_rule is CgroupRule.NONE)))

    @property
    def kernel_checkable(self) -> bool:
        """The kernel programs know no VERIFIED_EXEC process yet: cases that need one are model-only."""
        return not self.verified_exec

    @property
    def cgroup_scoped(self) -> bool:
        """The case has a ``deny_cgroup_inode`` entry."""
        return self.cgroup_rule is not CgroupRule.NONE


E, A = Mode.ENFORCE, Mode.AUDIT
PROTECT = PROTECT_VERIFIED_EXEC
OPENER, OTHER = CgroupRule.OPENER, CgroupRule.OTHER

CASES: tuple[Case, ...] = (
    Case("no-rule", 0, E, Verdict.ALLOW, AllowReason.NO_RULE),
    Case("unknown-bit-only", UNKNOWN_FLAG, E, Verdict.ALLOW, AllowReason.NO_RULE),
    Case("deny-always-enforce", DENY_ALWAYS, E, Verdict.DENY),
    Case("deny-always-audit", DENY_ALWAYS, A, Verdict.AUDIT),
    Case("deny-always-plus-unknown-bit", DENY_ALWAYS | UNKNOWN_FLAG, E, Verdict.DENY),
    Case("deny-always-survival", DENY_ALWAYS, E, Verdict.ALLOW, AllowReason.SURVIVAL, survival=True),
    Case("deny-always-survival-audit", DENY_ALWAYS, A, Verdict.ALLOW, AllowReason.SURVIVAL, survival=True),
    Case("deny-always-allow-cgroup", DENY_ALWAYS, E, Verdict.ALLOW, AllowReason.ALLOW_CGROUP, cgroup_allowed=True),
    Case("survival-before-cgroup", DENY_ALWAYS, E, Verdict.ALLOW, AllowReason.SURVIVAL, survival=True,
         cgroup_allowed=True),
    Case("deny-always-verified", DENY_ALWAYS, E, Verdict.DENY, verified_exec=True),
    # protect-only: denies an unverified opener exactly as DENY_ALWAYS does (decision.py, steps 4-5)
    Case("protect-only-unverified-enforce", PROTECT, E, Verdict.DENY),
    Case("protect-only-unverified-audit", PROTECT, A, Verdict.AUDIT),
    Case("protect-only-survival", PROTECT, E, Verdict.ALLOW, AllowReason.SURVIVAL, survival=True),
    Case("protect-only-allow-cgroup", PROTECT, E, Verdict.ALLOW, AllowReason.ALLOW_CGROUP, cgroup_allowed=True),
    Case("protect-only-verified", PROTECT, E, Verdict.ALLOW, AllowReason.VERIFIED_EXEC, verified_exec=True),
    Case("protect-only-verified-audit", PROTECT, A, Verdict.ALLOW, AllowReason.VERIFIED_EXEC, verified_exec=True),
    Case("both-bits-verified", DENY_ALWAYS | PROTECT, E, Verdict.DENY, verified_exec=True),
    # cgroup-scoped rules (deny_cgroup_inode): checked with the global rule, not exempted by allow_cgroup
    Case("cgroup-rule-enforce", 0, E, Verdict.DENY, cgroup_rule=OPENER),
    Case("cgroup-rule-audit", 0, A, Verdict.AUDIT, cgroup_rule=OPENER),
    Case("cgroup-rule-other-cgroup", 0, E, Verdict.ALLOW, AllowReason.NO_RULE, cgroup_rule=OTHER),
    Case("cgroup-rule-allow-cgroup", 0, E, Verdict.DENY, cgroup_allowed=True, cgroup_rule=OPENER),
    Case("cgroup-rule-survival", 0, E, Verdict.ALLOW, AllowReason.SURVIVAL, survival=True, cgroup_rule=OPENER),
    Case("cgroup-rule-unknown-bit", UNKNOWN_FLAG, E, Verdict.DENY, cgroup_rule=OPENER),
    Case("cgroup-and-global-rule", DENY_ALWAYS, E, Verdict.DENY, cgroup_rule=OPENER),
    Case("cgroup-and-global-rule-audit", DENY_ALWAYS, A, Verdict.AUDIT, cgroup_rule=OPENER),
    Case("cgroup-and-global-rule-allow-cgroup", DENY_ALWAYS, E, Verdict.DENY, cgroup_allowed=True,
         cgroup_rule=OPENER),
    Case("global-rule-allow-cgroup-cgroup-rule-other", DENY_ALWAYS, E, Verdict.ALLOW, AllowReason.ALLOW_CGROUP,
         cgroup_allowed=True, cgroup_rule=OTHER),
    Case("cgroup-rule-protect-only-verified", PROTECT, E, Verdict.DENY, verified_exec=True, cgroup_rule=OPENER),
)

KERNEL_CASES = tuple(c for c in CASES if c.kernel_checkable)


def own_cgid() -> int:
    """This process's cgid (``bpf_get_current_cgroup_id()``; children inherit it): the inode of its cgroup
    v2 directory."""
    with open("/proc/self/cgroup", "rb") as f:
        rel = next(line[3:].rstrip(b"\n") for line in f if line.startswith(b"0::"))
    return os.stat(cgroup2_mount() + rel).st_ino


def block_count(stats: Map) -> int:
    """``block_stats.blocks`` summed over CPUs."""
    return sum(v.blocks for v in stats.lookup_elem(0))


def kernel_verdict(eperm: bool, counted: int) -> Verdict:
    """A kernel program's outcome: -EPERM is DENY; otherwise a counted block is AUDIT, none ALLOW."""
    if eperm:
        return Verdict.DENY
    return Verdict.AUDIT if counted else Verdict.ALLOW
