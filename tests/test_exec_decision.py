"""The exec decision model (pybpfguard.agent.execdecision) against its table (tests/exec_decision_table.py)."""

from __future__ import annotations

import pytest

from pybpfguard.agent.decision import AllowReason, Mode, RuleKind, Verdict
from pybpfguard.agent.execdecision import ExecRequest, ExecRules, decide_exec, exec_rule
from pybpfguard.agent.options import EnforceSignal
from tests.exec_decision_table import EXEC_CASES, AllBut, ExecCase

KEY = (1234, 271581186)
NAME = b"payload"
CGID = 4242


@pytest.mark.parametrize("case", EXEC_CASES, ids=lambda c: c.name)
def test_model_decides_every_exec_case_of_the_table(case: ExecCase) -> None:
    d = decide_exec(case.rules(KEY, NAME, CGID), case.request(KEY, NAME, CGID), case.mode, EnforceSignal.TERM)
    assert (d.verdict, d.reason, d.rule) == (case.expect, case.reason, case.rule)
    assert d.matched is (case.expect is not Verdict.ALLOW)
    # deny_comm never signals (as bprm_check_security); a not-allowlisted exec gets the configured signal
    want_signal = None if case.expect is not Verdict.DENY else (
        EnforceSignal.NONE if case.rule is RuleKind.DENY_COMM else EnforceSignal.TERM)
    assert d.signal is want_signal


def test_the_table_covers_every_verdict_both_exec_rules_and_the_exemptions() -> None:
    assert {c.expect for c in EXEC_CASES} == set(Verdict)
    assert {c.rule for c in EXEC_CASES} - {None} == {RuleKind.DENY_COMM, RuleKind.NOT_ALLOWLISTED}
    assert {c.reason for c in EXEC_CASES} - {None} == {AllowReason.NO_RULE, AllowReason.SURVIVAL,
                                                       AllowReason.ALLOW_CGROUP}


def test_a_basename_of_16_bytes_or_more_never_matches_deny_comm() -> None:
    long = b"a" * 16
    rules = ExecRules(deny_comm=frozenset({long, long[:15]}))
    assert exec_rule(rules, KEY, long) is None
    assert exec_rule(rules, KEY, long[:15]) is RuleKind.DENY_COMM


def test_allow_cgroups_may_be_any_container() -> None:
    rules = ExecRules(allowlist=True, allow_cgroups=AllBut(CGID))
    assert decide_exec(rules, ExecRequest(KEY, NAME, CGID), Mode.ENFORCE).verdict is Verdict.DENY
    other = decide_exec(rules, ExecRequest(KEY, NAME, CGID + 1), Mode.ENFORCE)
    assert (other.verdict, other.reason) == (Verdict.ALLOW, AllowReason.ALLOW_CGROUP)


def test_no_active_rule_without_deny_comm_or_allowlist_mode() -> None:
    assert not ExecRules(allow_exec=frozenset({KEY})).active
    assert ExecRules(deny_comm=frozenset({NAME})).active and ExecRules(allowlist=True).active
