"""``net_*_block`` events replayed (pybpfguard.agent.policy.replay): the decision is decide_net's for every
case of the network table (tests/netdecision_table.py) that an event can carry."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket

import pytest

from pybpfguard.agent import netdecision
from pybpfguard.agent.decision import FileRules, Mode, Verdict
from pybpfguard.agent.netdecision import NetAllowReason, decide_net
from pybpfguard.agent.policy import replay as replay_mod
from pybpfguard.agent.policy.model import CgroupRef, Direction, IpPortRule, PortRule, Protocol, Section
from pybpfguard.agent.policy.replay import Outcome, explain, read_event, read_events, replay
from pybpfguard.agent.policy.ruleset import FileRuleSet, NetRuleSet, RuleSets, rule_sets_from_policy
from tests.netdecision_table import CASES, CGID, NetCase
from tests.policy.replay_events import lines, net_event, policy

# Events carry neither VERIFIED_EXEC nor families other than ipv4/ipv6.
EVENT_CASES = [c for c in CASES if not c.verified and c.family in (None, socket.AF_INET, socket.AF_INET6)]


def _event(case: NetCase):  # type: ignore[no-untyped-def]
    return net_event(case.hook.value, case.remote, case.remote_port or None, case.local_port or None,
                     case.protocol, CGID)


def test_the_replay_calls_the_network_model_itself() -> None:
    assert replay_mod.decide_net is netdecision.decide_net


@pytest.mark.parametrize("case", EVENT_CASES, ids=lambda c: c.name)
def test_simulate_decides_every_case_of_the_net_table_as_decide_net(case: NetCase) -> None:
    rules = case.rules()
    sets = RuleSets(FileRuleSet(FileRules({}, frozenset(), frozenset())), NetRuleSet(rules))
    read = read_event(lines(_event(case)))
    assert read.event is not None, read.reason
    r = next(replay(sets, policy(), [read]))
    expected = decide_net(rules, case.request(), Mode.ENFORCE)
    assert r.decision == expected
    if expected.verdict is Verdict.DENY:
        assert r.outcome is Outcome.WOULD_BLOCK_NET
    elif expected.reason is NetAllowReason.ALLOW_CGROUP and decide_net(
            dataclasses.replace(rules, allow_cgroups=frozenset()), case.request(), Mode.ENFORCE).matched:
        assert r.outcome is Outcome.WOULD_ALLOW
    else:
        assert r.outcome is Outcome.NO_MATCH


def test_every_net_event_type_is_replayed() -> None:
    hooks = {c.hook for c in EVENT_CASES}
    assert len(hooks) == 6


P = policy(
    allow_cgroup=[("cgid:77", CgroupRef(cgid=77))],
    deny_cidr=[("10.0.0.0/8", ipaddress.ip_network("10.0.0.0/8"))],
    deny_port=[("443:tcp:egress", PortRule(443, Protocol.TCP, Direction.EGRESS)),
               ("8080:any:bind", PortRule(8080, Protocol.ANY, Direction.BIND))],
    deny_ip_port=[("[2001:db8::1]:53:udp", IpPortRule(ipaddress.ip_address("2001:db8::1"), 53, Protocol.UDP))],
)


def _sets() -> RuleSets:
    return rule_sets_from_policy(P, resolve_cgroup=lambda p: 1)


def test_explain_a_connect_event() -> None:
    ev = net_event("connect", "10.1.2.3", 443, rule_type="port")
    x = explain(_sets(), P, read_event(lines(ev)).event)  # type: ignore[arg-type]
    d = x.as_dict()
    assert d["outcome"] == "would_block_net"
    assert d["inferred_rule"] == "[deny_cidr] 10.0.0.0/8 (line 5)"
    assert {k for k, v in d["matches"].items() if v} == {"deny_cidr", "deny_port"}
    assert any("rule_type port" in n and "cidr matches first" in n for n in d["notes"])


def test_explain_mapped_v4_bind_and_exempt() -> None:
    sets = _sets()
    x = explain(sets, P, read_event(lines(net_event("sendmsg", "::ffff:10.0.0.7", 53, protocol=17))).event)  # type: ignore[arg-type]
    assert x.outcome is Outcome.WOULD_BLOCK_NET and any("IPv4-mapped" in n for n in x.notes)
    x = explain(sets, P, read_event(lines(net_event("bind", local_port=8080, rule_type="port"))).event)  # type: ignore[arg-type]
    assert x.inferred_rule is not None and x.inferred_rule[0] is Section.DENY_PORT
    x = explain(sets, P, read_event(lines(net_event("connect", "10.0.0.1", 443, cgid=77))).event)  # type: ignore[arg-type]
    assert x.outcome is Outcome.WOULD_ALLOW and x.matches[Section.ALLOW_CGROUP]
    assert x.matches[Section.DENY_CIDR] and any("allow_cgroup" in n for n in x.notes)
    x = explain(sets, P, read_event(lines(net_event("connect", "2001:db8::1", 53, protocol=17))).event)  # type: ignore[arg-type]
    assert x.as_dict()["inferred_rule"] == "[deny_ip_port] [2001:db8::1]:53:udp (line 10)"


def test_no_remote_address_fails_open() -> None:
    evs = list(read_events([lines(net_event("sendmsg", None, None, protocol=17))]))
    r = next(replay(_sets(), P, evs))
    assert r.outcome is Outcome.NO_MATCH and r.reason == "no_address"
