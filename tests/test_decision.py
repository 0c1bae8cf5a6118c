"""The decision model (pybpfguard.agent.decision) against the table of cases (tests/decision_table.py)."""

from __future__ import annotations

import pytest

from pybpfguard.agent.decision import AllowReason, Operation, RuleKind, Verdict, decide_file, rule_kind
from pybpfguard.agent.options import EnforceSignal
from tests.decision_table import CASES, Case, CgroupRule

KEY = (1234, 271581186)
CGID = 4242


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("op", list(Operation))
def test_model_decides_every_case_of_the_table(case: Case, op: Operation) -> None:
    req = case.request(KEY, CGID)
    d = decide_file(case.rules(KEY, CGID), type(req)(req.key, req.cgid, req.verified_exec, op), case.mode,
                    EnforceSignal.TERM)
    assert (d.verdict, d.reason) == (case.expect, case.reason)
    assert d.matched is (case.expect is not Verdict.ALLOW)
    assert d.signal is (EnforceSignal.TERM if case.expect is Verdict.DENY else None)
    assert d.rule is (RuleKind.CGROUP_DENY_INODE if case.cgroup_rule is CgroupRule.OPENER else rule_kind(case.flags))


def test_another_cgroup_gets_no_exemption() -> None:
    case = next(c for c in CASES if c.name == "deny-always-allow-cgroup")
    assert decide_file(case.rules(KEY, CGID), case.request(KEY, CGID + 1), case.mode).verdict is Verdict.DENY


@pytest.mark.parametrize("flags, kind", [(0, None), (0x80, None), (1, RuleKind.DENY_ALWAYS),
                                         (2, RuleKind.PROTECT_VERIFIED_EXEC), (3, RuleKind.DENY_ALWAYS)])
def test_rule_kind_of_a_deny_inode_value(flags: int, kind: RuleKind | None) -> None:
    assert rule_kind(flags) is kind


def test_the_table_covers_every_verdict_and_reason() -> None:
    assert {c.expect for c in CASES} == set(Verdict)
    assert {c.reason for c in CASES} - {None} == set(AllowReason)


def test_a_cgroup_rule_denies_only_its_cgroup_and_is_not_exempted() -> None:
    case = next(c for c in CASES if c.name == "cgroup-rule-allow-cgroup")
    rules = case.rules(KEY, CGID)
    assert decide_file(rules, case.request(KEY, CGID), case.mode).verdict is Verdict.DENY
    assert decide_file(rules, case.request(KEY, CGID + 1), case.mode).reason is AllowReason.NO_RULE
    assert decide_file(rules, case.request(KEY, 0), case.mode).reason is AllowReason.NO_RULE  # unknown cgroup


def test_the_cgroup_rule_kind_is_no_deny_inode_value() -> None:
    assert all(rule_kind(flags) is not RuleKind.CGROUP_DENY_INODE for flags in range(256))
