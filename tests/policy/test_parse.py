"""parse_policy: golden policies give the expected typed values; every bad input is a PolicyError naming the
line of the first error (docs/policy.md, "Policy files")."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from pybpfguard.agent.policy.model import (
    CgroupDenyInode,
    CgroupDenyIp,
    CgroupDenyPort,
    CgroupRef,
    Direction,
    InodeRef,
    IpPortRule,
    PolicyError,
    PortRule,
    Protocol,
    Section,
)
from pybpfguard.agent.policy.parse import parse_policy

GOLDEN = Path(__file__).parent / "golden"
S = Section


def _parse(text: str | bytes):  # type: ignore[no-untyped-def]
    return parse_policy(text.encode() if isinstance(text, str) else text, "p.conf")


def test_the_reference_example_parses_to_its_rules():
    p = parse_policy((GOLDEN / "example.conf").read_bytes(), "example.conf")
    assert (p.version, p.version_line, p.flags, p.duplicates) == (6, 1, {}, [])
    assert p.values(S.DENY_PATH) == [b"/etc/shadow"]
    assert p.values(S.DENY_INODE) == [InodeRef(2049, 123456)]
    assert p.values(S.ALLOW_CGROUP) == [CgroupRef(path=b"/sys/fs/cgroup/my_service"), CgroupRef(cgid=10243)]
    assert p.values(S.DENY_IP) == [IPv4Address("10.0.0.1"), IPv6Address("2001:db8::1")]
    assert p.values(S.DENY_CIDR) == [IPv4Network("10.0.0.0/8")]
    assert p.values(S.DENY_PORT) == [PortRule(443, Protocol.TCP, Direction.EGRESS),
                                     PortRule(53, Protocol.UDP, Direction.BOTH),
                                     PortRule(8080, Protocol.ANY, Direction.BIND)]
    assert p.values(S.DENY_IP_PORT) == [IpPortRule(IPv4Address("10.0.0.1"), 8443, Protocol.TCP)]
    assert p.values(S.DENY_COMM) == [b"xmrig"]
    assert p.values(S.CGROUP_DENY_PORT) == [
        CgroupDenyPort(CgroupRef(cgid=10243), PortRule(443, Protocol.TCP, Direction.EGRESS))]
    assert p.section_lines[S.DENY_COMM] == 20 and p.entries(S.DENY_COMM)[0].line == 21


def test_every_section_parses_to_its_typed_value():
    p = parse_policy((GOLDEN / "all_sections.conf").read_bytes(), "all_sections.conf")
    assert p.version == 6 and p.version_line == 2
    assert set(p.section_lines) == set(Section)
    assert set(p.flags) == {s for s in Section if s.kind.value == "flag"}
    expected = {
        S.DENY_PATH: [b"/etc/shadow", b"/srv/data/#not-a-comment"],
        S.DENY_INODE: [InodeRef(2049, 123456), InodeRef(0, 2**64 - 1)],
        S.PROTECT_PATH: [b"/usr/bin/protected"],
        S.ALLOW_CGROUP: [CgroupRef(path=b"/sys/fs/cgroup/system.slice/app.service"), CgroupRef(cgid=1)],
        S.DENY_IP: [IPv4Address("192.0.2.1"), IPv6Address("2001:db8::1")],
        S.DENY_CIDR: [IPv4Network("198.51.100.0/24"), IPv6Network("2001:db8:1::/48")],
        S.DENY_PORT: [PortRule(22), PortRule(8080, Protocol.ANY, Direction.EGRESS),
                      PortRule(53, Protocol.UDP, Direction.BOTH), PortRule(443, Protocol.TCP, Direction.EGRESS)],
        S.DENY_IP_PORT: [IpPortRule(IPv4Address("203.0.113.9"), 8443, Protocol.TCP),
                         IpPortRule(IPv6Address("2001:db8::2"), 53, Protocol.UDP),
                         IpPortRule(IPv4Address("203.0.113.9"), 80, Protocol.ANY)],
        S.DENY_BINARY_HASH: [bytes.fromhex("abcdef0123456789" * 4)],
        S.ALLOW_BINARY_HASH: [bytes(31) + b"\x01"],
        S.SCAN_PATHS: [b"/opt/app/bin"],
        S.DENY_COMM: [b"xmrig", b"a name with sp"],
        S.TRUSTED_EXEC_HASH: [b"\x11" * 32],
        S.CGROUP_DENY_INODE: [CgroupDenyInode(CgroupRef(path=b"/sys/fs/cgroup/my service"), InodeRef(2049, 7))],
        S.CGROUP_DENY_IP: [CgroupDenyIp(CgroupRef(cgid=10243), IPv4Address("10.1.2.3"))],
        S.CGROUP_DENY_PORT: [CgroupDenyPort(CgroupRef(cgid=10243), PortRule(443, Protocol.TCP, Direction.EGRESS)),
                             CgroupDenyPort(CgroupRef(cgid=10243), PortRule(9000))],
    }
    assert {s: p.values(s) for s in p.sections} == expected
    assert all(s.kind.value == "entries" for s in expected)


def test_entries_keep_their_line_and_trimmed_text():
    p = _parse("version=1\r\n\r\n  # a comment\r\n[deny_path]  \r\n\t/etc/shadow \r\n")
    (entry,) = p.entries(S.DENY_PATH)
    assert (entry.line, entry.text, entry.value) == (5, "/etc/shadow", b"/etc/shadow")
    assert p.section_lines[S.DENY_PATH] == 4


def test_no_header_is_version_1_and_an_empty_section_is_present():
    p = _parse("[deny_path]\n[deny_comm]\nsshx\n")
    assert (p.version, p.version_line) == (1, None)
    assert p.sections[S.DENY_PATH] == [] and not p.has(S.DENY_PATH) and p.has(S.DENY_COMM)


def test_an_empty_file_is_an_empty_version_1_policy():
    p = _parse(b"")
    assert (p.version, p.sections, p.flags) == (1, {}, {})


def test_a_hash_mark_inside_a_line_is_data():
    assert _parse("[deny_comm]\na#b\n").values(S.DENY_COMM) == [b"a#b"]


def test_non_ascii_utf8_paths_are_their_utf8_bytes():
    assert _parse("[deny_path]\n/srv/caf\u00e9\n").values(S.DENY_PATH) == ["/srv/caf\u00e9".encode()]


def test_duplicates_by_exact_text_are_dropped_and_recorded():
    p = _parse("[deny_port]\n80\n80:any:both\n80\n[deny_comm]\nx\nx\n")
    assert p.values(S.DENY_PORT) == [PortRule(80), PortRule(80)]  # different text: both kept
    assert p.duplicates == [(S.DENY_PORT, 4, 2), (S.DENY_COMM, 7, 6)]


def test_ip_port_and_cgroup_sections_deduplicate_by_value():
    p = _parse("version=6\n[deny_ip_port]\n10.0.0.1:80\n10.0.0.1:80:any\n[2001:db8::1]:80\n[2001:db8:0::1]:80:\n"
               "[cgroup_deny_port]\ncgid:5 80\ncgid:5  80::both\n[cgroup_deny_inode]\ncgid:5 1:2\ncgid:5 01:2\n"
               "[cgroup_deny_ip]\ncgid:5 10.0.0.1\ncgid:5\t10.0.0.1\n")
    assert len(p.values(S.DENY_IP_PORT)) == 2
    assert [len(p.values(s)) for s in (S.CGROUP_DENY_PORT, S.CGROUP_DENY_INODE, S.CGROUP_DENY_IP)] == [1, 1, 1]
    assert p.duplicates == [(S.DENY_IP_PORT, 4, 3), (S.DENY_IP_PORT, 6, 5), (S.CGROUP_DENY_PORT, 9, 8),
                            (S.CGROUP_DENY_INODE, 12, 11), (S.CGROUP_DENY_IP, 15, 14)]


def test_deny_port_empty_fields_take_the_defaults():
    values = _parse("[deny_port]\n8080::egress\n8080:\n8080::\n8080:tcp:\n").values(S.DENY_PORT)
    assert values == [PortRule(8080, Protocol.ANY, Direction.EGRESS), PortRule(8080), PortRule(8080),
                      PortRule(8080, Protocol.TCP)]


def test_limits_that_are_accepted():
    p = _parse("version=6\n[deny_path]\n/" + "a" * 4094 + "\n[deny_comm]\n" + "c" * 15 + "\n[deny_port]\n1\n65535\n"
               "[deny_cidr]\n0.0.0.0/0\n::/0\n10.0.0.1/32\n::1/128\n[deny_inode]\n4294967295:0\n"
               "[allow_cgroup]\ncgid:18446744073709551615\n")
    assert len(p.values(S.DENY_PATH)[0]) == 4095 and p.values(S.DENY_COMM) == [b"c" * 15]
    assert p.values(S.ALLOW_CGROUP) == [CgroupRef(cgid=2**64 - 1)]


GLOB_MESSAGE = "glob characters are not supported in deny_path; list each file or use deny_inode"

# (policy text, line of the error, a fragment of the message): one per bad-input class.
BAD = [
    # hostnames where an address belongs
    ("[deny_ip]\nexample.com\n", 2, "hostname"),
    ("[deny_cidr]\nexample.com/8\n", 2, "hostname"),
    ("[deny_ip_port]\nexample.com:80\n", 2, "hostname"),
    ("version=6\n[cgroup_deny_ip]\ncgid:1 localhost\n", 3, "hostname"),
    ("[deny_ip]\n10.0.0.256\n", 2, "not an IPv4 or IPv6 address"),
    ("[deny_ip]\nfe80::1%eth0\n", 2, "scoped"),
    ("[deny_ip]\n[::1]\n", 2, "unknown section [::1]"),
    ("version=6\n[cgroup_deny_ip]\ncgid:1 ::1\n", 3, "IPv4 addresses only"),
    # ports out of range
    ("[deny_port]\n0\n", 2, "port 0 out of range 1-65535"),
    ("[deny_port]\n65536:tcp\n", 2, "port 65536 out of range"),
    ("[deny_port]\n-1\n", 2, "decimal"),
    ("[deny_port]\n\n\n80:sctp\n", 4, "unknown protocol"),
    ("[deny_port]\n80:tcp:ingress\n", 2, "unknown direction"),
    ("[deny_port]\n80:tcp:both:x\n", 2, "expected <port>"),
    ("[deny_ip_port]\n10.0.0.1:0\n", 2, "port 0 out of range"),
    ("[deny_ip_port]\n10.0.0.1\n", 2, "expected IP:PORT"),
    ("version=6\n[cgroup_deny_port]\ncgid:1 70000\n", 3, "port 70000 out of range"),
    # prefixes out of range, host bits
    ("[deny_cidr]\n10.0.0.0/33\n", 2, "prefix length 33 out of range 0-32"),
    ("[deny_cidr]\n2001:db8::/129\n", 2, "prefix length 129 out of range 0-128"),
    ("[deny_cidr]\n10.0.0.0/255.0.0.0\n", 2, "decimal"),
    ("[deny_cidr]\n10.0.0.1/8\n", 2, "host bits set"),
    ("[deny_cidr]\n10.0.0.0\n", 2, "no prefix length"),
    # relative paths, globs, lengths
    ("[deny_path]\netc/shadow\n", 2, "relative path"),
    ("version=4\n[protect_path]\n./x\n", 3, "relative path"),
    ("version=3\n[scan_paths]\nbin\n", 3, "relative scan path"),
    ("[allow_cgroup]\nmy_service\n", 2, "relative cgroup path"),
    ("[deny_path]\n/" + "a" * 4095 + "\n", 2, "4096 bytes, limit 4095"),
    ("[deny_comm]\n" + "c" * 16 + "\n", 2, "at most 15 bytes"),
    ("[deny_comm]\n/usr/bin/xmrig\n", 2, "basename"),
    # globs: the exact message
    ("[deny_path]\n/etc/*.conf\n", 2, GLOB_MESSAGE),
    ("[deny_path]\n/etc/shado?\n", 2, "glob characters"),
    ("[deny_path]\n/etc/[ab]\n", 2, "glob characters"),
    ("version=4\n[protect_path]\n/usr/bin/*\n", 3, "glob characters"),
    # unknown sections, duplicate headers
    ("[deny_everything]\n", 1, "unknown section [deny_everything]"),
    ("[Deny_Path]\n", 1, "unknown section"),
    ("[deny_path]\n/a\n[deny_comm]\n[deny_path]\n", 4, "duplicate section [deny_path] (first at line 1)"),
    ("version=6\nversion=6\n", 2, "duplicate version header (first at line 1)"),
    ("version=6\nmode=enforce\n", 2, "unknown header key 'mode'"),
    ("/etc/shadow\n", 1, "expected version=N or a [section] header"),
    ("version=7\n", 1, "version 7 out of range 1-6"),
    ("version=0\n", 1, "version 0 out of range"),
    ("version=six\n", 1, "decimal"),
    ("version=\n", 1, "decimal"),
    # version too low for a section
    ("[deny_binary_hash]\n", 1, "[deny_binary_hash] needs version=3 or later (this policy is version 1)"),
    ("version=2\n[allow_binary_hash]\n", 2, "needs version=3"),
    ("version=3\n[protect_connect]\n", 2, "needs version=4"),
    ("version=4\n[trusted_exec_hash]\n", 2, "needs version=5"),
    ("version=5\n[cgroup_deny_inode]\n", 2, "needs version=6"),
    ("version=5\n[cgroup_deny_port]\n", 2, "needs version=6"),
    # flag sections with entries
    ("[deny_ptrace]\nyes\n", 2, "[deny_ptrace] is a flag section and takes no entries"),
    ("version=4\n[protect_connect]\n# fine\n\n1\n", 5, "flag section"),
    # cross-checks (reported at the flag's header)
    ("version=5\n[trusted_exec_hash]\n[ima_fail_closed]\n", 3, "needs a non-empty [trusted_exec_hash]"),
    ("version=4\n[protect_runtime_deps]\n[protect_path]\n", 2, "needs [protect_connect] or a non-empty"),
    # malformed values
    ("[deny_inode]\n2049\n", 2, "<dev>:<ino>"),
    ("[deny_inode]\n4294967296:1\n", 2, "dev 4294967296 out of range"),
    ("[deny_inode]\n1:18446744073709551616\n", 2, "ino 18446744073709551616 out of range"),
    ("[deny_inode]\n1:" + "9" * 5000 + "\n", 2, "out of range"),
    ("[deny_inode]\n0x801:5\n", 2, "decimal"),
    ("[allow_cgroup]\ncgid:0\n", 2, "cgid 0 out of range"),
    ("[allow_cgroup]\ncgid:abc\n", 2, "decimal"),
    ("version=3\n[deny_binary_hash]\nsha256:abc\n", 3, "sha256:<64 hex digits>"),
    ("version=3\n[deny_binary_hash]\n" + "a" * 64 + "\n", 3, "sha256:<64 hex digits>"),
    ("version=3\n[deny_binary_hash]\nsha256:" + "g" * 64 + "\n", 3, "sha256:<64 hex digits>"),
    ("[deny_ip_port]\n2001:db8::1:80\n", 2, "brackets"),
    ("[deny_ip_port]\n[10.0.0.1]:80\n", 2, "only IPv6 addresses are bracketed"),
    ("[deny_ip_port]\n[2001:db8::1:80\n", 2, "[v6]:PORT"),
    ("version=6\n[cgroup_deny_inode]\ncgid:1\n", 3, "<cgroup-path|cgid:N> <rule>"),
    ("version=6\n[cgroup_deny_inode]\nrel 1:2\n", 3, "relative cgroup path"),
    ("[deny_path]\n/a\0b\n", 2, "NUL"),
    # not UTF-8: the line is named
    (b"version=1\n# comment\n[deny_path]\n/caf\xe9\n", 4, "not UTF-8"),
    (b"\n\n\xff\xfe\n", 3, "not UTF-8"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), BAD, ids=[repr(b[0])[:60] for b in BAD])
def test_bad_input_is_a_policy_error_naming_the_line(text, line, fragment):
    with pytest.raises(PolicyError) as info:
        _parse(text)
    err = info.value
    assert (err.source, err.line) == ("p.conf", line), err
    assert fragment in err.reason, err
    if fragment == GLOB_MESSAGE:
        assert err.reason == GLOB_MESSAGE
    assert str(err) == f"p.conf: line {line}: {err.reason}"


def test_the_first_error_is_the_one_reported():
    with pytest.raises(PolicyError) as info:
        _parse("[deny_ip]\nexample.com\n[nope]\n")
    assert info.value.line == 2


def test_a_utf8_bom_is_ignored():
    assert _parse(b"\xef\xbb\xbfversion=2\n").version == 2


def test_an_error_before_a_line_that_is_not_utf8_is_reported_first():
    with pytest.raises(PolicyError) as info:
        _parse(b"[nope]\n\xff\n")
    assert info.value.line == 1
    with pytest.raises(PolicyError) as info:
        _parse(b"[deny_comm]\nok\n  ab\xc3\n")
    assert (info.value.line, info.value.reason) == (3, "not UTF-8 text (byte 5 of the line)")


def test_a_large_policy_parses_every_entry():
    text = "version=1\n[deny_inode]\n" + "".join(f"2049:{i}\n" for i in range(1, 65537))
    p = _parse(text)
    assert len(p.entries(S.DENY_INODE)) == 65536 and p.entries(S.DENY_INODE)[-1].value == InodeRef(2049, 65536)
