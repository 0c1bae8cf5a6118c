"""The network decision as one table of cases: (rules, request, mode) -> expected decision.

The model is held to it (tests/test_netdecision.py), and so is ``simulate`` on ``net_*_block`` events
(tests/policy/test_simulate_net.py); the network hooks are to be held to the same cases once they exist.
Rules are written compactly: addresses as text, ports as ``(port, proto, dir)``.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from pybpfguard.agent.decision import Mode, Verdict
from pybpfguard.agent.netdecision import Hook, NetAllowReason, NetRequest, NetRules, NetRuleType

TCP, UDP, ANY = 6, 17, 0
EGRESS, BIND, BOTH = 0, 1, 2
CGID = 4242  # the process's cgroup in every case
OTHER_CGID = 777
V4, V6 = socket.AF_INET, socket.AF_INET6


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@dataclass(frozen=True)
class NetCase:
    """``ips``, ``cidrs`` as text; ``ports`` :data:`~pybpfguard.agent.netdecision.PortKey`; ``ip_ports``
    ``(text, port, proto)``; ``cg_ips`` addresses denied to :data:`CGID` (or ``(cgid, text)``);
    ``cg_ports`` port keys denied to :data:`CGID`; ``allowed``: :data:`CGID` is in ``allow_cgroup``.
    ``expect_key``: the matched key in the model's terms (None: not checked)."""

    name: str
    hook: Hook
    remote: str | None
    expect: Verdict
    rule_type: NetRuleType | None = None
    reason: NetAllowReason | None = None
    remote_port: int = 0
    local_port: int = 0
    protocol: int = TCP
    family: int | None = None  # default: from the remote address (AF_INET when there is none)
    mode: Mode = Mode.ENFORCE
    verified: bool = False
    ips: tuple[str, ...] = ()
    cidrs: tuple[str, ...] = ()
    ports: tuple[tuple[int, int, int], ...] = ()
    ip_ports: tuple[tuple[str, int, int], ...] = ()
    cg_ips: tuple[str | tuple[int, str], ...] = ()
    cg_ports: tuple[tuple[int, int, int], ...] = ()
    cg_ports_other: tuple[tuple[int, int, int], ...] = field(default=())  # denied to OTHER_CGID only
    allowed: bool = False
    protect_connect: bool = False
    expect_key: object = None

    def rules(self) -> NetRules:
        cg_ips = {(c[0], _ip(c[1])) if isinstance(c, tuple) else (CGID, _ip(c)) for c in self.cg_ips}
        return NetRules(
            ips=frozenset(map(_ip, self.ips)),
            cidrs=frozenset(ipaddress.ip_network(c) for c in self.cidrs),
            ports=frozenset(self.ports),
            ip_ports=frozenset((_ip(a), p, pr) for a, p, pr in self.ip_ports),
            cgroup_ips=frozenset(cg_ips),  # type: ignore[arg-type]
            cgroup_ports=frozenset({(CGID, *k) for k in self.cg_ports}
                                   | {(OTHER_CGID, *k) for k in self.cg_ports_other}),
            allow_cgroups=frozenset({CGID} if self.allowed else ()),
            protect_connect=self.protect_connect)

    def request(self) -> NetRequest:
        remote = _ip(self.remote) if self.remote is not None else None
        family = self.family if self.family is not None else (V6 if remote is not None and remote.version == 6
                                                              else V4)
        return NetRequest(self.hook, family, self.protocol, remote, self.remote_port, self.local_port, CGID,
                          self.verified)


C, S, R, B, L, A = Hook.CONNECT, Hook.SENDMSG, Hook.RECVMSG, Hook.BIND, Hook.LISTEN, Hook.ACCEPT
DENY, AUDIT, ALLOW = Verdict.DENY, Verdict.AUDIT, Verdict.ALLOW
T = NetRuleType
NO_RULE = NetAllowReason.NO_RULE

CASES: tuple[NetCase, ...] = (
    NetCase("empty", C, "10.0.0.1", ALLOW, reason=NO_RULE, remote_port=443),
    NetCase("ip-v4", C, "10.0.0.1", DENY, T.IP, remote_port=443, ips=("10.0.0.1",), expect_key=_ip("10.0.0.1")),
    NetCase("ip-v4-audit", C, "10.0.0.1", AUDIT, T.IP, remote_port=443, ips=("10.0.0.1",), mode=Mode.AUDIT),
    NetCase("ip-other-address", C, "10.0.0.2", ALLOW, reason=NO_RULE, ips=("10.0.0.1",)),
    NetCase("ip-v6", C, "2001:db8::1", DENY, T.IP, ips=("2001:db8::1",)),
    NetCase("ip-v4-mapped-v6", C, "::ffff:10.0.0.1", DENY, T.IP, ips=("10.0.0.1",), expect_key=_ip("10.0.0.1")),
    NetCase("ip-v6-rule-not-v4", C, "10.0.0.1", ALLOW, reason=NO_RULE, ips=("::ffff:10.0.0.1",)),
    NetCase("cidr-v4", C, "10.1.2.3", DENY, T.CIDR, cidrs=("10.0.0.0/8",),
            expect_key=ipaddress.ip_network("10.0.0.0/8")),
    NetCase("cidr-longest-prefix", C, "10.1.2.3", DENY, T.CIDR, cidrs=("10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16"),
            expect_key=ipaddress.ip_network("10.1.0.0/16")),
    NetCase("cidr-host-route", C, "10.1.2.3", DENY, T.CIDR, cidrs=("10.0.0.0/8", "10.1.2.3/32"),
            expect_key=ipaddress.ip_network("10.1.2.3/32")),
    NetCase("cidr-default-route", C, "192.0.2.9", DENY, T.CIDR, cidrs=("0.0.0.0/0",)),
    NetCase("cidr-miss", C, "11.0.0.1", ALLOW, reason=NO_RULE, cidrs=("10.0.0.0/8",)),
    NetCase("cidr-v6", C, "2001:db8:1::5", DENY, T.CIDR, cidrs=("2001:db8::/32",)),
    NetCase("cidr-v4-mapped-v6", C, "::ffff:10.9.9.9", DENY, T.CIDR, cidrs=("10.0.0.0/8",)),
    NetCase("cidr-v6-does-not-cover-v4", C, "10.0.0.1", ALLOW, reason=NO_RULE, cidrs=("::/0",)),
    NetCase("ip-before-cidr", C, "10.0.0.1", DENY, T.IP, ips=("10.0.0.1",), cidrs=("10.0.0.0/8",)),
    NetCase("ip-port-exact-proto", C, "10.0.0.1", DENY, T.IP_PORT, remote_port=8443,
            ip_ports=(("10.0.0.1", 8443, TCP),), expect_key=(_ip("10.0.0.1"), 8443, TCP)),
    NetCase("ip-port-any-proto", C, "10.0.0.1", DENY, T.IP_PORT, remote_port=8443, protocol=UDP,
            ip_ports=(("10.0.0.1", 8443, ANY),), expect_key=(_ip("10.0.0.1"), 8443, ANY)),
    NetCase("ip-port-exact-before-any", C, "10.0.0.1", DENY, T.IP_PORT, remote_port=8443,
            ip_ports=(("10.0.0.1", 8443, ANY), ("10.0.0.1", 8443, TCP)), expect_key=(_ip("10.0.0.1"), 8443, TCP)),
    NetCase("ip-port-other-proto", C, "10.0.0.1", ALLOW, reason=NO_RULE, remote_port=8443, protocol=UDP,
            ip_ports=(("10.0.0.1", 8443, TCP),)),
    NetCase("ip-port-other-port", C, "10.0.0.1", ALLOW, reason=NO_RULE, remote_port=443,
            ip_ports=(("10.0.0.1", 8443, TCP),)),
    NetCase("ip-port-before-ip", C, "10.0.0.1", DENY, T.IP_PORT, remote_port=8443, ips=("10.0.0.1",),
            ip_ports=(("10.0.0.1", 8443, TCP),)),
    NetCase("ip-port-v6", C, "2001:db8::1", DENY, T.IP_PORT, remote_port=53, protocol=UDP,
            ip_ports=(("2001:db8::1", 53, UDP),)),
    NetCase("ip-port-v4-mapped", S, "::ffff:10.0.0.1", DENY, T.IP_PORT, remote_port=53, protocol=UDP,
            ip_ports=(("10.0.0.1", 53, ANY),)),
    # port lookup order: (p, proto, dir) -> (p, 0, dir) -> (p, proto, 2) -> (p, 0, 2)
    NetCase("port-exact", C, "10.0.0.1", DENY, T.PORT, remote_port=443, ports=((443, TCP, EGRESS),),
            expect_key=(443, TCP, EGRESS)),
    NetCase("port-any-proto-same-dir", C, "10.0.0.1", DENY, T.PORT, remote_port=443,
            ports=((443, ANY, EGRESS), (443, TCP, BOTH), (443, ANY, BOTH)), expect_key=(443, ANY, EGRESS)),
    NetCase("port-order-1", C, "10.0.0.1", DENY, T.PORT, remote_port=443,
            ports=((443, TCP, EGRESS), (443, ANY, EGRESS), (443, TCP, BOTH), (443, ANY, BOTH)),
            expect_key=(443, TCP, EGRESS)),
    NetCase("port-proto-both", C, "10.0.0.1", DENY, T.PORT, remote_port=443, ports=((443, TCP, BOTH), (443, ANY, BOTH)),
            expect_key=(443, TCP, BOTH)),
    NetCase("port-any-both", C, "10.0.0.1", DENY, T.PORT, remote_port=443, protocol=UDP, ports=((443, ANY, BOTH),),
            expect_key=(443, ANY, BOTH)),
    NetCase("port-other-proto", C, "10.0.0.1", ALLOW, reason=NO_RULE, remote_port=53, protocol=TCP,
            ports=((53, UDP, BOTH),)),
    NetCase("port-bind-rule-not-egress", C, "10.0.0.1", ALLOW, reason=NO_RULE, remote_port=8080,
            ports=((8080, ANY, BIND),)),
    NetCase("port-other-protocol-number", C, "10.0.0.1", DENY, T.PORT, remote_port=9, protocol=132,
            ports=((9, ANY, BOTH),)),
    NetCase("cidr-before-port", C, "10.0.0.1", DENY, T.CIDR, remote_port=443, cidrs=("10.0.0.0/8",),
            ports=((443, ANY, BOTH),)),
    NetCase("sendmsg-port", S, "10.0.0.1", DENY, T.PORT, remote_port=53, protocol=UDP, ports=((53, UDP, BOTH),)),
    NetCase("recvmsg-ip", R, "10.0.0.1", DENY, T.IP, remote_port=53, protocol=UDP, ips=("10.0.0.1",)),
    NetCase("egress-no-address", S, None, ALLOW, reason=NetAllowReason.NO_ADDRESS, ports=((53, ANY, BOTH),)),
    # cgroup-scoped rules come last and need the process's cgroup
    NetCase("cg-ip", C, "10.0.0.1", DENY, T.CG_IP, remote_port=443, cg_ips=("10.0.0.1",),
            expect_key=(CGID, _ip("10.0.0.1"))),
    NetCase("cg-ip-other-cgroup", C, "10.0.0.1", ALLOW, reason=NO_RULE, cg_ips=((OTHER_CGID, "10.0.0.1"),)),
    NetCase("cg-ip-v4-mapped", C, "::ffff:10.0.0.1", DENY, T.CG_IP, cg_ips=("10.0.0.1",)),
    NetCase("port-before-cg-ip", C, "10.0.0.1", DENY, T.PORT, remote_port=443, ports=((443, ANY, BOTH),),
            cg_ips=("10.0.0.1",)),
    NetCase("cg-port", C, "10.0.0.1", DENY, T.CG_PORT, remote_port=443, cg_ports=((443, TCP, EGRESS),),
            expect_key=(CGID, 443, TCP, EGRESS)),
    NetCase("cg-port-order", C, "10.0.0.1", DENY, T.CG_PORT, remote_port=443,
            cg_ports=((443, ANY, BOTH), (443, ANY, EGRESS)), expect_key=(CGID, 443, ANY, EGRESS)),
    NetCase("cg-port-other-cgroup", C, "10.0.0.1", ALLOW, reason=NO_RULE, remote_port=443,
            cg_ports_other=((443, ANY, BOTH),)),
    NetCase("cg-ip-before-cg-port", C, "10.0.0.1", DENY, T.CG_IP, remote_port=443, cg_ips=("10.0.0.1",),
            cg_ports=((443, ANY, BOTH),)),
    # exemptions and identity
    NetCase("allow-cgroup", C, "10.0.0.1", ALLOW, reason=NetAllowReason.ALLOW_CGROUP, ips=("10.0.0.1",),
            allowed=True),
    NetCase("allow-cgroup-before-cg-rules", C, "10.0.0.1", ALLOW, reason=NetAllowReason.ALLOW_CGROUP,
            remote_port=443, cg_ports=((443, ANY, BOTH),), allowed=True),
    NetCase("allow-cgroup-before-identity", C, "10.0.0.1", ALLOW, reason=NetAllowReason.ALLOW_CGROUP,
            protect_connect=True, allowed=True),
    NetCase("identity-unverified", C, "10.0.0.1", DENY, T.IDENTITY, protect_connect=True),
    NetCase("identity-before-ip", C, "10.0.0.1", DENY, T.IDENTITY, protect_connect=True, ips=("10.0.0.1",)),
    NetCase("identity-verified-falls-through", C, "10.0.0.1", DENY, T.IP, protect_connect=True, verified=True,
            ips=("10.0.0.1",)),
    NetCase("identity-verified-allowed", C, "10.0.0.1", ALLOW, reason=NO_RULE, protect_connect=True, verified=True),
    NetCase("identity-audit", C, "10.0.0.1", AUDIT, T.IDENTITY, protect_connect=True, mode=Mode.AUDIT),
    NetCase("identity-not-on-bind", B, None, ALLOW, reason=NO_RULE, local_port=8080, protect_connect=True),
    NetCase("other-family", C, "10.0.0.1", ALLOW, reason=NetAllowReason.FAMILY, family=socket.AF_UNIX,
            ips=("10.0.0.1",)),
    # bind and listen: local port, direction bind; address rules never apply
    NetCase("bind-port", B, None, DENY, T.PORT, local_port=8080, ports=((8080, ANY, BIND),),
            expect_key=(8080, ANY, BIND)),
    NetCase("bind-port-both", B, None, DENY, T.PORT, local_port=8080, ports=((8080, TCP, BOTH),)),
    NetCase("bind-egress-rule-not-bind", B, None, ALLOW, reason=NO_RULE, local_port=8080,
            ports=((8080, ANY, EGRESS),)),
    NetCase("bind-ignores-ip", B, "10.0.0.1", ALLOW, reason=NO_RULE, local_port=8080, ips=("10.0.0.1",),
            cidrs=("0.0.0.0/0",)),
    NetCase("listen-port", L, None, DENY, T.PORT, local_port=8080, protocol=TCP, ports=((8080, TCP, BIND),)),
    NetCase("listen-audit", L, None, AUDIT, T.PORT, local_port=8080, ports=((8080, ANY, BOTH),), mode=Mode.AUDIT),
    NetCase("bind-cg-port", B, None, DENY, T.CG_PORT, local_port=8080, cg_ports=((8080, ANY, BIND),),
            expect_key=(CGID, 8080, ANY, BIND)),
    NetCase("bind-allow-cgroup", B, None, ALLOW, reason=NetAllowReason.ALLOW_CGROUP, local_port=8080,
            ports=((8080, ANY, BOTH),), allowed=True),
    # accept: local port (bind), then the peer's ip_port, IP, CIDR
    NetCase("accept-local-port", A, "10.0.0.1", DENY, T.PORT, local_port=22, remote_port=50000,
            ports=((22, TCP, BIND),), ips=("10.0.0.1",)),
    NetCase("accept-peer-ip", A, "10.0.0.1", DENY, T.IP, local_port=22, remote_port=50000, ips=("10.0.0.1",)),
    NetCase("accept-peer-cidr", A, "10.0.0.1", DENY, T.CIDR, local_port=22, cidrs=("10.0.0.0/8",)),
    NetCase("accept-peer-ip-port", A, "10.0.0.1", DENY, T.IP_PORT, local_port=22, remote_port=50000,
            ip_ports=(("10.0.0.1", 50000, TCP),)),
    NetCase("accept-no-peer", A, None, ALLOW, reason=NO_RULE, local_port=22, ips=("10.0.0.1",)),
    NetCase("accept-egress-port-not-local", A, "10.0.0.1", ALLOW, reason=NO_RULE, local_port=22,
            ports=((22, ANY, EGRESS),)),
    NetCase("accept-no-cg-port", A, "10.0.0.1", ALLOW, reason=NO_RULE, local_port=22, cg_ports=((22, ANY, BOTH),)),
    NetCase("accept-no-cg-ip", A, "10.0.0.1", ALLOW, reason=NO_RULE, local_port=22, cg_ips=("10.0.0.1",)),
)
