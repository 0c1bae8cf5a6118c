"""The exec decision (pybpfguard/agent/execdecision.py) as one table of cases: (rules, request) -> expected.

Held by the model (tests/test_exec_decision.py) and the fanotify exec tier end to end
(tests/guard/test_exec_guard.py). A case names the executable and the caller abstractly (``name_denied``:
its basename is in ``deny_comm``; ``listed``: its inode is in ``allow_exec_inode``; ``survival``;
``cgroup_allowed``); each tier fills in its own inode, basename and cgid.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpfguard.agent.decision import AllowReason, Mode, RuleKind, Verdict
from pybpfguard.agent.execdecision import ExecRequest, ExecRules
from pybpfguard.agent.paths import InodeKey

#: deny_comm entries every case carries besides (maybe) the executable's own name: never its name.
OTHER_NAMES = frozenset({b"xmrig", b"nc"})


@dataclass(frozen=True)
class ExecCase:
    name: str
    mode: Mode
    expect: Verdict
    reason: AllowReason | None = None
    rule: RuleKind | None = None
    name_denied: bool = False
    allowlist: bool = False
    listed: bool = False
    survival: bool = False
    cgroup_allowed: bool = False

    def rules(self, key: InodeKey, basename: bytes, caller_cgid: int) -> ExecRules:
        return ExecRules(deny_comm=OTHER_NAMES | ({basename} if self.name_denied else set()),
                         allow_exec=frozenset({key} if self.listed else ()), allowlist=self.allowlist,
                         allow_cgroups=frozenset({caller_cgid} if self.cgroup_allowed else ()),
                         survival=frozenset({key} if self.survival else ()))

    def request(self, key: InodeKey, basename: bytes, caller_cgid: int) -> ExecRequest:
        return ExecRequest(key, basename, caller_cgid)


E, A = Mode.ENFORCE, Mode.AUDIT
COMM, UNLISTED = RuleKind.DENY_COMM, RuleKind.NOT_ALLOWLISTED

EXEC_CASES: tuple[ExecCase, ...] = (
    ExecCase("no-rule", E, Verdict.ALLOW, AllowReason.NO_RULE),
    ExecCase("comm-enforce", E, Verdict.DENY, rule=COMM, name_denied=True),
    ExecCase("comm-audit", A, Verdict.AUDIT, rule=COMM, name_denied=True),
    ExecCase("comm-survival", E, Verdict.ALLOW, AllowReason.SURVIVAL, COMM, name_denied=True, survival=True),
    ExecCase("comm-allow-cgroup", E, Verdict.ALLOW, AllowReason.ALLOW_CGROUP, COMM, name_denied=True,
             cgroup_allowed=True),
    ExecCase("comm-survival-before-cgroup", E, Verdict.ALLOW, AllowReason.SURVIVAL, COMM, name_denied=True,
             survival=True, cgroup_allowed=True),
    ExecCase("allowlist-listed", E, Verdict.ALLOW, AllowReason.NO_RULE, allowlist=True, listed=True),
    ExecCase("allowlist-unlisted-enforce", E, Verdict.DENY, rule=UNLISTED, allowlist=True),
    ExecCase("allowlist-unlisted-audit", A, Verdict.AUDIT, rule=UNLISTED, allowlist=True),
    ExecCase("allowlist-unlisted-survival", E, Verdict.ALLOW, AllowReason.SURVIVAL, UNLISTED, allowlist=True,
             survival=True),
    ExecCase("allowlist-unlisted-allow-cgroup", E, Verdict.ALLOW, AllowReason.ALLOW_CGROUP, UNLISTED,
             allowlist=True, cgroup_allowed=True),
    ExecCase("listed-but-comm-denied", E, Verdict.DENY, rule=COMM, name_denied=True, allowlist=True, listed=True),
    ExecCase("unlisted-and-comm-denied", E, Verdict.DENY, rule=COMM, name_denied=True, allowlist=True),
    ExecCase("listed-without-allowlist-mode", E, Verdict.ALLOW, AllowReason.NO_RULE, listed=True),
)


class AllBut:
    """Every cgroup but one: the allow_cgroups a host test uses so only its child is ever decided."""

    def __init__(self, cgid: int) -> None:
        self.cgid = cgid

    def __contains__(self, cgid: object) -> bool:
        return cgid != self.cgid
