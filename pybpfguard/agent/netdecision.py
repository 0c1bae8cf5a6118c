"""The network decision, once: what a rule set decides for one socket operation (docs/policy.md).

Values only, no I/O: policy ``simulate`` and ``explain`` call :func:`decide_net`, and the network hooks are
to be held to the same cases (tests/netdecision_table.py). The first match decides, in this order:

- connect, sendmsg, recvmsg (remote address and port, direction egress): 1 the cgroup is in
  ``allow_cgroup`` -> allow; 2 ``protect_connect`` and the process is not VERIFIED_EXEC -> ``identity``;
  3 ``deny_ip_port`` (exact protocol, then protocol any) -> ``ip_port``; 4 exact IP -> ``ip``; 5 CIDR,
  longest prefix -> ``cidr``; 6 remote port -> ``port``; 7 ``deny_cgroup_ipv4`` -> ``cg_ip``;
  8 ``deny_cgroup_port`` -> ``cg_port``.
- bind, listen (local port, direction bind; address rules do not apply): 1 ``allow_cgroup``; 2 port ->
  ``port``; 3 ``deny_cgroup_port`` -> ``cg_port``.
- accept: 1 ``allow_cgroup``; 2 local port (direction bind) -> ``port``; 3 the peer's ``ip_port``, IP,
  CIDR -> that rule type.

A port rule is looked up as ``(port, proto, dir)``, then ``(port, any, dir)``, ``(port, proto, both)``,
``(port, any, both)``; cgroup-scoped port rules alike. An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``)
is checked against the IPv4 rules. Families other than AF_INET and AF_INET6 are ignored (allowed); an
address the hook could not read fails open. Protocol and direction bytes are those of the maps
(:class:`~pybpfguard.agent.policy.model.Protocol`, :class:`~pybpfguard.agent.policy.model.Direction`).
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from collections.abc import Set
from dataclasses import dataclass, field
from typing import NamedTuple

from pybpfguard.agent.decision import Mode, Verdict
from pybpfguard.agent.policy.model import Direction, IpAddress, IpNetwork

__all__ = [
    "CgroupPortKey",
    "Hook",
    "IpPortKey",
    "NetAllowReason",
    "NetDecision",
    "NetRequest",
    "NetRuleType",
    "NetRules",
    "PortKey",
    "decide_net",
    "match_cgroup_ip",
    "match_cgroup_port",
    "match_cidr",
    "match_ip",
    "match_ip_port",
    "match_port",
    "rule_address",
]

PortKey = tuple[int, int, int]
"""``deny_port`` key ``(port, proto, dir)``: proto 0 any / 6 tcp / 17 udp, dir 0 egress / 1 bind / 2 both."""
IpPortKey = tuple[IpAddress, int, int]
"""``deny_ip_port`` key ``(address, port, proto)``."""
CgroupPortKey = tuple[int, int, int, int]
"""``deny_cgroup_port`` key ``(cgid, port, proto, dir)``."""
CgroupIpKey = tuple[int, ipaddress.IPv4Address]
"""``deny_cgroup_ipv4`` key ``(cgid, address)``."""


class Hook(enum.Enum):
    """The socket operation (the LSM hook ``socket_<name>``); the value is the ``net_<value>_block`` event's."""

    CONNECT = "connect"
    SENDMSG = "sendmsg"
    RECVMSG = "recvmsg"
    BIND = "bind"
    LISTEN = "listen"
    ACCEPT = "accept"


_EGRESS_HOOKS = frozenset({Hook.CONNECT, Hook.SENDMSG, Hook.RECVMSG})


class NetRuleType(enum.Enum):
    """The rule that matched: the ``rule_type`` of a ``net_*_block`` event."""

    IP_PORT = "ip_port"
    IP = "ip"
    CIDR = "cidr"
    PORT = "port"
    CG_IP = "cg_ip"
    CG_PORT = "cg_port"
    IDENTITY = "identity"


class NetAllowReason(enum.Enum):
    """Why a socket operation was allowed."""

    NO_RULE = "no_rule"
    ALLOW_CGROUP = "allow_cgroup"
    FAMILY = "family"  # neither AF_INET nor AF_INET6: network rules do not apply
    NO_ADDRESS = "no_address"  # the remote address could not be read: fails open


@dataclass(frozen=True, slots=True)
class NetRules:
    """One complete network rule set. ``ips``: exact addresses (``deny_ipv4``/``deny_ipv6``); ``cidrs``
    (``deny_cidr_v4``/``_v6``, host bits clear); ``ports`` (:data:`PortKey`); ``ip_ports``
    (:data:`IpPortKey`); ``cgroup_ips`` (:data:`CgroupIpKey`); ``cgroup_ports`` (:data:`CgroupPortKey`);
    ``allow_cgroups`` (cgids); ``protect_connect``: the flag of the same name."""

    ips: Set[IpAddress] = frozenset()
    cidrs: Set[IpNetwork] = frozenset()
    ports: Set[PortKey] = frozenset()
    ip_ports: Set[IpPortKey] = frozenset()
    cgroup_ips: Set[CgroupIpKey] = frozenset()
    cgroup_ports: Set[CgroupPortKey] = frozenset()
    allow_cgroups: Set[int] = frozenset()
    protect_connect: bool = False
    # prefix lengths present per IP version, longest first: the LPM lookup tries only these
    _prefixes: dict[int, tuple[int, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_version: dict[int, set[int]] = {4: set(), 6: set()}
        for net in self.cidrs:
            by_version[net.version].add(net.prefixlen)
        object.__setattr__(self, "_prefixes", {v: tuple(sorted(p, reverse=True)) for v, p in by_version.items()})

    @property
    def empty(self) -> bool:
        """No deny rule at all (the network policy-empty hint)."""
        return not (self.ips or self.cidrs or self.ports or self.ip_ports or self.cgroup_ips or self.cgroup_ports
                    or self.protect_connect)


class NetRequest(NamedTuple):
    """One socket operation. ``family``: AF_INET/AF_INET6 (others are ignored); ``protocol``: IPPROTO_*
    (6 tcp, 17 udp, any other number as is); ``remote``/``remote_port``: the peer (for connect and
    sendmsg the destination; None when unknown); ``local_port``: the bound port (bind, listen, accept);
    ``cgid`` of the process (0 unknown); ``verified``: the process is VERIFIED_EXEC."""

    hook: Hook
    family: int
    protocol: int
    remote: IpAddress | None = None
    remote_port: int = 0
    local_port: int = 0
    cgid: int = 0
    verified: bool = False


@dataclass(frozen=True, slots=True)
class NetDecision:
    """The outcome: ``verdict``; ``rule_type`` and ``key`` (the matched map key) when a rule matched;
    ``reason`` when allowed."""

    verdict: Verdict
    rule_type: NetRuleType | None = None
    key: object = None
    reason: NetAllowReason | None = None

    @property
    def matched(self) -> bool:
        return self.verdict is not Verdict.ALLOW


def rule_address(addr: IpAddress) -> IpAddress:
    """The address the rules are checked with: an IPv4-mapped IPv6 address as its IPv4 address."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _port_keys(port: int, proto: int, direction: Direction) -> tuple[PortKey, ...]:
    both = int(Direction.BOTH)
    return ((port, proto, int(direction)), (port, 0, int(direction)), (port, proto, both), (port, 0, both))


def match_port(rules: NetRules, port: int, proto: int, direction: Direction) -> PortKey | None:
    """The ``deny_port`` key that matches, in lookup order, or None."""
    return next((k for k in _port_keys(port, proto, direction) if k in rules.ports), None)


def match_cgroup_port(rules: NetRules, cgid: int, port: int, proto: int, direction: Direction) -> CgroupPortKey | None:
    """The ``deny_cgroup_port`` key that matches for *cgid*, in the port lookup order, or None."""
    return next(((cgid, *k) for k in _port_keys(port, proto, direction) if (cgid, *k) in rules.cgroup_ports), None)


def match_ip_port(rules: NetRules, addr: IpAddress, port: int, proto: int) -> IpPortKey | None:
    """The ``deny_ip_port`` key: exact protocol first, then any. *addr* as :func:`rule_address` gives it."""
    for key in ((addr, port, proto), (addr, port, 0)):
        if key in rules.ip_ports:
            return key
    return None


def match_ip(rules: NetRules, addr: IpAddress) -> IpAddress | None:
    return addr if addr in rules.ips else None


def match_cidr(rules: NetRules, addr: IpAddress) -> IpNetwork | None:
    """The longest matching prefix of ``deny_cidr``, or None."""
    for plen in rules._prefixes[addr.version]:
        net = ipaddress.ip_network((addr, plen), strict=False)
        if net in rules.cidrs:
            return net
    return None


def match_cgroup_ip(rules: NetRules, cgid: int, addr: IpAddress) -> CgroupIpKey | None:
    """``deny_cgroup_ipv4`` (IPv4 only)."""
    if isinstance(addr, ipaddress.IPv4Address) and (cgid, addr) in rules.cgroup_ips:
        return (cgid, addr)
    return None


_ALLOW = {reason: NetDecision(Verdict.ALLOW, reason=reason) for reason in NetAllowReason}


def _peer(rules: NetRules, addr: IpAddress, port: int, proto: int) -> tuple[NetRuleType, object] | None:
    """Steps ip_port, ip, cidr on a peer."""
    key: object
    if (key := match_ip_port(rules, addr, port, proto)) is not None:
        return NetRuleType.IP_PORT, key
    if (key := match_ip(rules, addr)) is not None:
        return NetRuleType.IP, key
    if (key := match_cidr(rules, addr)) is not None:
        return NetRuleType.CIDR, key
    return None


def _first_match(rules: NetRules, req: NetRequest) -> tuple[NetRuleType, object] | NetAllowReason:
    key: object
    if req.hook in _EGRESS_HOOKS:
        if rules.protect_connect and not req.verified:
            return NetRuleType.IDENTITY, None
        if req.remote is None:
            return NetAllowReason.NO_ADDRESS
        addr = rule_address(req.remote)
        if (hit := _peer(rules, addr, req.remote_port, req.protocol)) is not None:
            return hit
        if (key := match_port(rules, req.remote_port, req.protocol, Direction.EGRESS)) is not None:
            return NetRuleType.PORT, key
        if (key := match_cgroup_ip(rules, req.cgid, addr)) is not None:
            return NetRuleType.CG_IP, key
        if (key := match_cgroup_port(rules, req.cgid, req.remote_port, req.protocol, Direction.EGRESS)) is not None:
            return NetRuleType.CG_PORT, key
        return NetAllowReason.NO_RULE
    if (key := match_port(rules, req.local_port, req.protocol, Direction.BIND)) is not None:
        return NetRuleType.PORT, key
    if req.hook is Hook.ACCEPT:
        if req.remote is not None and (hit := _peer(rules, rule_address(req.remote), req.remote_port,
                                                    req.protocol)) is not None:
            return hit
        return NetAllowReason.NO_RULE
    if (key := match_cgroup_port(rules, req.cgid, req.local_port, req.protocol, Direction.BIND)) is not None:
        return NetRuleType.CG_PORT, key
    return NetAllowReason.NO_RULE


def decide_net(rules: NetRules, req: NetRequest, mode: Mode) -> NetDecision:
    """The decision for *req* under *rules* in effective *mode*: DENY (enforce) or AUDIT (audit) with the
    rule type and key that matched first, or ALLOW with the reason."""
    if req.family not in (socket.AF_INET, socket.AF_INET6):
        return _ALLOW[NetAllowReason.FAMILY]
    if req.cgid in rules.allow_cgroups:
        return _ALLOW[NetAllowReason.ALLOW_CGROUP]
    hit = _first_match(rules, req)
    if isinstance(hit, NetAllowReason):
        return _ALLOW[hit]
    rule_type, key = hit
    return NetDecision(Verdict.AUDIT if mode is Mode.AUDIT else Verdict.DENY, rule_type, key)
