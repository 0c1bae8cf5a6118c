"""Policy text -> :class:`~pybpfguard.agent.policy.model.Policy` (docs/policy.md, "Policy files").

The format is line-oriented UTF-8: ``version=N`` header lines, ``[section]`` headers, one entry per line.
Lines are trimmed (so CR/LF endings work), blank lines are skipped, and a line whose first non-blank
character is ``#`` is a comment. The first error raises :class:`PolicyError` naming the source and the
1-based line; nothing here touches the filesystem (apply resolves paths and cgroups).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

from pybpfguard.agent.paths import DENY_PATH_MAX_BYTES, PathRuleError, check_rule_path
from pybpfguard.agent.policy.model import (
    MAX_VERSION,
    CgroupDenyInode,
    CgroupDenyIp,
    CgroupDenyPort,
    CgroupRef,
    Direction,
    Entry,
    EntryValue,
    InodeRef,
    IpAddress,
    IpNetwork,
    IpPortRule,
    Policy,
    PolicyError,
    PortRule,
    Protocol,
    Section,
    SectionKind,
)

__all__ = ["COMM_MAX_BYTES", "DIRECTION_NAMES", "PROTOCOL_NAMES", "parse_entry", "parse_policy"]

COMM_MAX_BYTES = 15  # TASK_COMM_LEN 16 with the NUL (include/linux/sched.h)
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
_BOM = b"\xef\xbb\xbf"
_PLAIN_PATH = re.compile(rb"/[^\0*?\[]*")  # absolute, no NUL, no glob character
_INODE = re.compile(r"([0-9]{1,10}):([0-9]{1,20})")
_WS = " \t\n\r\x0b\x0c"  # what bytes.strip() strips: ASCII whitespace
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HASH_PREFIX = "sha256:"
_CGID_PREFIX = "cgid:"

#: spelling -> protocol; ``any`` is also what an empty field means
PROTOCOL_NAMES: dict[str, Protocol] = {"any": Protocol.ANY, "tcp": Protocol.TCP, "udp": Protocol.UDP}
#: spelling -> direction; ``connect`` is a synonym of ``egress``
DIRECTION_NAMES: dict[str, Direction] = {
    "egress": Direction.EGRESS, "connect": Direction.EGRESS, "bind": Direction.BIND, "both": Direction.BOTH,
}

# De-duplicated by value (the canonical key) rather than by the text as written.
_DEDUP_BY_VALUE = frozenset({
    Section.DENY_IP_PORT, Section.CGROUP_DENY_INODE, Section.CGROUP_DENY_IP, Section.CGROUP_DENY_PORT,
})


def _q(text: str, limit: int = 60) -> str:
    """*text* quoted for a message: escaped (repr), cut to *limit* characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


class _Bad(ValueError):
    """An entry was refused; the parser adds the source and line."""


# --- values --------------------------------------------------------------------------------------------


def _decimal(text: str, what: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit()):
        raise _Bad(f"{what} must be a decimal number, found {_q(text)}")
    digits = text.lstrip("0") or "0"  # int() refuses more than 4300 digits, leading zeros included
    if len(digits) > 20:  # beyond any u64
        raise _Bad(f"{what} {_q(text)} out of range {low}-{high}")
    n = int(digits)
    if not low <= n <= high:
        raise _Bad(f"{what} {n} out of range {low}-{high}")
    return n


def _rule_path(text: str) -> bytes:
    raw = text.encode()
    if len(raw) <= DENY_PATH_MAX_BYTES and _PLAIN_PATH.fullmatch(raw):
        return raw  # accepted by check_rule_path too, in one step; anything else gets its reason from it
    try:
        return check_rule_path(raw)
    except PathRuleError as err:
        raise _Bad(err.reason) from None


def _dir_path(text: str, what: str) -> bytes:
    """An absolute path taken literally (scan roots, cgroup directories): no NUL, at most 4095 bytes."""
    raw = text.encode()
    if not raw.startswith(b"/"):
        raise _Bad(f"relative {what} {_q(text)}; give an absolute path")
    if b"\0" in raw:
        raise _Bad(f"{what} contains a NUL byte")
    if len(raw) > DENY_PATH_MAX_BYTES:
        raise _Bad(f"{what} is {len(raw)} bytes, limit {DENY_PATH_MAX_BYTES}")
    return raw


def _not_an_address(text: str, what: str) -> _Bad:
    if re.fullmatch(r"[A-Za-z0-9.-]+", text) and re.search(r"[A-Za-z]", text):
        return _Bad(f"{_q(text)} is a hostname; give an {what}")
    return _Bad(f"{_q(text)} is not an {what}")


def _ip(text: str, what: str = "IPv4 or IPv6 address") -> IpAddress:
    if "%" in text:  # ipaddress accepts scoped IPv6 ("fe80::1%eth0"); the maps hold no scope
        raise _Bad(f"{_q(text)}: scoped IPv6 addresses are not supported")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise _not_an_address(text, what) from None


def _ipv4(text: str) -> ipaddress.IPv4Address:
    address = _ip(text, "IPv4 address")
    if not isinstance(address, ipaddress.IPv4Address):
        raise _Bad(f"{_q(text)} is IPv6; this section takes IPv4 addresses only")
    return address


def _cidr(text: str) -> IpNetwork:
    address_text, slash, prefix_text = text.partition("/")
    if not slash:
        raise _Bad(f"{_q(text)} has no prefix length; write a.b.c.d/n or v6/n (or use deny_ip)")
    address = _ip(address_text)
    bits = address.max_prefixlen
    prefix = _decimal(prefix_text, "prefix length", 0, bits)
    network = ipaddress.ip_network((address, prefix), strict=False)
    if network.network_address != address:
        raise _Bad(f"{_q(text)} has host bits set; the network is {network}")
    return network


def _hash(text: str) -> bytes:
    if not text.startswith(_HASH_PREFIX) or not _HEX64.fullmatch(text[len(_HASH_PREFIX):]):
        raise _Bad(f"expected sha256:<64 hex digits>, found {_q(text)}")
    return bytes.fromhex(text[len(_HASH_PREFIX):])


def _inode(text: str) -> InodeRef:
    match = _INODE.fullmatch(text)  # the common case in one step; the slow path below says what is wrong
    if match is not None and (dev := int(match[1])) <= U32_MAX and (ino := int(match[2])) <= U64_MAX:
        return InodeRef(dev, ino)
    dev_text, colon, ino_text = text.partition(":")
    if not colon:
        raise _Bad(f"expected <dev>:<ino> (decimal), found {_q(text)}")
    return InodeRef(_decimal(dev_text, "dev", 0, U32_MAX), _decimal(ino_text, "ino", 0, U64_MAX))


def _cgroup(text: str) -> CgroupRef:
    if text.startswith(_CGID_PREFIX):
        return CgroupRef(cgid=_decimal(text[len(_CGID_PREFIX):], "cgid", 1, U64_MAX))
    return CgroupRef(path=_dir_path(text, "cgroup path"))


def _comm(text: str) -> bytes:
    raw = text.encode()
    if b"/" in raw:
        raise _Bad(f"{_q(text)}: deny_comm takes an executable's basename, not a path")
    if b"\0" in raw:
        raise _Bad("deny_comm entry contains a NUL byte")
    if len(raw) > COMM_MAX_BYTES:
        raise _Bad(f"{_q(text)} is {len(raw)} bytes; a comm is at most {COMM_MAX_BYTES} bytes")
    return raw


def _protocol(text: str) -> Protocol:
    if text == "":
        return Protocol.ANY
    try:
        return PROTOCOL_NAMES[text]
    except KeyError:
        raise _Bad(f"unknown protocol {_q(text)}; expected tcp, udp or any") from None


def _port_rule(text: str) -> PortRule:
    fields = text.split(":")
    if len(fields) > 3:
        raise _Bad(f"expected <port>[:<tcp|udp|any>[:<egress|connect|bind|both>]], found {_q(text)}")
    fields += [""] * (3 - len(fields))
    port = _decimal(fields[0], "port", 1, 65535)
    if fields[2] == "":
        direction = Direction.BOTH
    elif fields[2] in DIRECTION_NAMES:
        direction = DIRECTION_NAMES[fields[2]]
    else:
        raise _Bad(f"unknown direction {_q(fields[2])}; expected egress, connect, bind or both")
    return PortRule(port, _protocol(fields[1]), direction)


def _ip_port(text: str) -> IpPortRule:
    if text.startswith("["):
        address_text, bracket, rest = text[1:].partition("]")
        if not bracket or not (rest.startswith(":") or rest == ""):
            raise _Bad(f"expected [v6]:PORT[:PROTO], found {_q(text)}")
        address = _ip(address_text, "IPv6 address")
        if not isinstance(address, ipaddress.IPv6Address):
            raise _Bad(f"{_q(text)}: only IPv6 addresses are bracketed; write a.b.c.d:PORT")
        fields = rest[1:].split(":") if rest else []
    else:
        address_text, *fields = text.split(":")
        if len(fields) > 2:
            raise _Bad(f"{_q(text)}: write an IPv6 address in brackets, [v6]:PORT[:PROTO]")
        address = _ip(address_text, "IPv4 address")
    if not fields or len(fields) > 2:
        raise _Bad(f"expected IP:PORT[:PROTO], found {_q(text)}")
    port = _decimal(fields[0], "port", 1, 65535)
    return IpPortRule(address, port, _protocol(fields[1] if len(fields) == 2 else ""))


def _scoped(text: str) -> tuple[CgroupRef, str]:
    """``<cgroup> <rule>`` -> (cgroup, rule text): the rule is the last whitespace-separated field, since a
    cgroup path may hold spaces."""
    match = re.fullmatch(r"(.*\S)\s+(\S+)", text, re.ASCII)
    if match is None:
        raise _Bad(f"expected <cgroup-path|cgid:N> <rule>, found {_q(text)}")
    return _cgroup(match[1]), match[2]


def _cgroup_deny_inode(text: str) -> CgroupDenyInode:
    cgroup, rule = _scoped(text)
    return CgroupDenyInode(cgroup, _inode(rule))


def _cgroup_deny_ip(text: str) -> CgroupDenyIp:
    cgroup, rule = _scoped(text)
    return CgroupDenyIp(cgroup, _ipv4(rule))


def _cgroup_deny_port(text: str) -> CgroupDenyPort:
    cgroup, rule = _scoped(text)
    return CgroupDenyPort(cgroup, _port_rule(rule))


#: entry section -> the parser of one entry's text (trimmed, non-empty)
_ENTRY_PARSERS: dict[Section, Callable[[str], EntryValue]] = {
    Section.DENY_PATH: _rule_path,
    Section.PROTECT_PATH: _rule_path,
    Section.SCAN_PATHS: lambda t: _dir_path(t, "scan path"),
    Section.DENY_INODE: _inode,
    Section.ALLOW_CGROUP: _cgroup,
    Section.DENY_IP: _ip,
    Section.DENY_CIDR: _cidr,
    Section.DENY_PORT: _port_rule,
    Section.DENY_IP_PORT: _ip_port,
    Section.DENY_BINARY_HASH: _hash,
    Section.ALLOW_BINARY_HASH: _hash,
    Section.TRUSTED_EXEC_HASH: _hash,
    Section.DENY_COMM: _comm,
    Section.CGROUP_DENY_INODE: _cgroup_deny_inode,
    Section.CGROUP_DENY_IP: _cgroup_deny_ip,
    Section.CGROUP_DENY_PORT: _cgroup_deny_port,
}


def parse_entry(section: Section, text: str) -> EntryValue:
    """The typed value of one entry of an entry *section* (text trimmed). Raises ValueError with the reason."""
    return _ENTRY_PARSERS[section](text)


# --- the file ------------------------------------------------------------------------------------------


def _lines(data: bytes, source: str) -> Iterator[tuple[int, str]]:
    """(line number, trimmed text) of every line that is neither blank nor a comment. Text that is not
    UTF-8 raises PolicyError at its line, after the lines before it (so an earlier error is reported first)."""
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    bad: tuple[int, int] | None = None  # (line, byte in the line) of the first byte that is not UTF-8
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        cut = data.rfind(b"\n", 0, err.start) + 1
        bad = (data.count(b"\n", 0, cut) + 1, err.start - cut + 1)
        text = data[:cut].decode("utf-8")  # whole lines before the bad byte: valid
    for number, line in enumerate(text.split("\n"), 1):
        line = line.strip(_WS)
        if line and line[0] != "#":
            yield number, line
    if bad is not None:
        raise PolicyError(source, bad[0], f"not UTF-8 text (byte {bad[1]} of the line)")


def _header(policy: Policy, source: str, number: int, text: str) -> None:
    key, equals, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not equals:
        raise PolicyError(source, number, f"expected version=N or a [section] header, found {_q(text)}")
    if key != "version":
        raise PolicyError(source, number, f"unknown header key {_q(key)}; only version is accepted")
    if policy.version_line is not None:
        raise PolicyError(source, number, f"duplicate version header (first at line {policy.version_line})")
    try:
        policy.version = _decimal(value, "version", 1, MAX_VERSION)
    except _Bad as err:
        raise PolicyError(source, number, str(err)) from None
    policy.version_line = number


def _section(policy: Policy, source: str, number: int, name: str) -> Section:
    try:
        section = Section(name.strip())
    except ValueError:
        raise PolicyError(source, number, f"unknown section [{_q(name)[1:-1]}]") from None
    if section in policy.section_lines:
        raise PolicyError(source, number,
                          f"duplicate section [{section.value}] (first at line {policy.section_lines[section]})")
    if policy.version < section.min_version:
        raise PolicyError(source, number, f"[{section.value}] needs version={section.min_version} or later "
                                          f"(this policy is version {policy.version})")
    policy.section_lines[section] = number
    if section.kind is SectionKind.FLAG:
        policy.flags[section] = number
    else:
        policy.sections[section] = []
    return section


def _cross_checks(policy: Policy, source: str) -> None:
    if Section.IMA_FAIL_CLOSED in policy.flags and not policy.has(Section.TRUSTED_EXEC_HASH):
        raise PolicyError(source, policy.flags[Section.IMA_FAIL_CLOSED],
                          "[ima_fail_closed] needs a non-empty [trusted_exec_hash]")
    if (Section.PROTECT_RUNTIME_DEPS in policy.flags and not policy.has(Section.PROTECT_CONNECT)
            and not policy.has(Section.PROTECT_PATH)):
        raise PolicyError(source, policy.flags[Section.PROTECT_RUNTIME_DEPS],
                          "[protect_runtime_deps] needs [protect_connect] or a non-empty [protect_path]")


def parse_policy(data: bytes, source: str) -> Policy:
    """Parse policy text *data* (bytes, UTF-8) read from *source* (a file name, or ``<stdin>``; used in
    messages only). Returns the :class:`Policy`; raises :class:`PolicyError` for the first error."""
    policy = Policy()
    # The current section, looked up once at its header: it may hold 65,536 entries.
    section: Section | None = None
    parse: Callable[[str], EntryValue] | None = None  # None in the header and in a flag section
    entries: list[Entry] = []
    by_value = False
    seen: dict[object, int] = {}  # de-duplication key -> line of the entry kept
    for number, text in _lines(data, source):
        if text[0] == "[" and text[-1] == "]":
            section = _section(policy, source, number, text[1:-1])
            parse = _ENTRY_PARSERS.get(section)
            entries = policy.sections.get(section, [])
            by_value = section in _DEDUP_BY_VALUE
            seen = {}
            continue
        if parse is None:
            if section is None:
                _header(policy, source, number, text)
                continue
            raise PolicyError(source, number, f"[{section.value}] is a flag section and takes no entries")
        try:
            value = parse(text)
        except ValueError as err:
            raise PolicyError(source, number, str(err)) from None
        key = value if by_value else text
        first = seen.setdefault(key, number)
        if first != number:
            policy.duplicates.append((section, number, first))  # type: ignore[arg-type]
            continue
        entries.append(Entry(number, text, value))
    _cross_checks(policy, source)
    return policy
