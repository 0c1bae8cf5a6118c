"""The network decision model (pybpfguard.agent.netdecision) against its table (tests/netdecision_table.py)."""

from __future__ import annotations

import ipaddress

import pytest

from pybpfguard.agent.decision import Mode, Verdict
from pybpfguard.agent.netdecision import (
    Hook,
    NetAllowReason,
    NetRules,
    NetRuleType,
    decide_net,
    match_cidr,
    match_port,
    rule_address,
)
from pybpfguard.agent.policy.model import Direction
from tests.netdecision_table import CASES, NetCase


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_model_decides_every_case_of_the_table(case: NetCase) -> None:
    d = decide_net(case.rules(), case.request(), case.mode)
    assert (d.verdict, d.rule_type, d.reason) == (case.expect, case.rule_type, case.reason)
    assert d.matched is (case.expect is not Verdict.ALLOW)
    if case.expect_key is not None:
        assert d.key == case.expect_key


@pytest.mark.parametrize("case", [c for c in CASES if c.expect is Verdict.DENY], ids=lambda c: c.name)
def test_audit_reports_what_enforce_denies(case: NetCase) -> None:
    d = decide_net(case.rules(), case.request(), Mode.AUDIT)
    assert (d.verdict, d.rule_type) == (Verdict.AUDIT, case.rule_type)


def test_the_table_covers_every_hook_rule_type_and_reason() -> None:
    assert {c.hook for c in CASES} == set(Hook)
    assert {c.rule_type for c in CASES} - {None} == set(NetRuleType)
    assert {c.reason for c in CASES} - {None} == set(NetAllowReason)
    assert {c.expect for c in CASES} == set(Verdict)


def test_names_are_unique() -> None:
    assert len({c.name for c in CASES}) == len(CASES)


def test_port_lookup_order_is_proto_then_any_then_both() -> None:
    keys = [(80, 6, 0), (80, 0, 0), (80, 6, 2), (80, 0, 2)]
    for i, key in enumerate(keys):
        rules = NetRules(ports=frozenset(keys[i:]))
        assert match_port(rules, 80, 6, Direction.EGRESS) == key


def test_cidr_lookup_is_longest_prefix_for_every_length() -> None:
    addr = ipaddress.ip_address("192.168.37.201")
    nets = frozenset(ipaddress.ip_network((addr, p), strict=False) for p in range(0, 33, 3))
    rules = NetRules(cidrs=nets)
    assert match_cidr(rules, addr) == ipaddress.ip_network((addr, 30), strict=False)


def test_mapped_addresses_become_ipv4_and_others_stay() -> None:
    assert rule_address(ipaddress.ip_address("::ffff:1.2.3.4")) == ipaddress.ip_address("1.2.3.4")
    assert rule_address(ipaddress.ip_address("2001:db8::1")) == ipaddress.ip_address("2001:db8::1")
    assert rule_address(ipaddress.ip_address("1.2.3.4")) == ipaddress.ip_address("1.2.3.4")


def test_empty_rules() -> None:
    assert NetRules().empty
    assert not NetRules(protect_connect=True).empty
