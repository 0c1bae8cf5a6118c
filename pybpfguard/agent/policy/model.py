"""The policy model (docs/policy.md): sections, typed entries, and the parsed policy.

A :class:`Policy` is what :func:`pybpfguard.agent.policy.parse.parse_policy` makes of a policy file: the
``version`` header, each section's de-duplicated entries in file order (each with the 1-based line it came
from), the flag sections present, and the duplicates found (which ``lint`` reports). Values only, no I/O:
resolving paths, cgroups and hashes against this host is apply's job (pybpfguard/agent/policy/resolve.py).
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import NamedTuple

from pybpfguard.agent.errors import AgentError

__all__ = [
    "MAX_VERSION",
    "CgroupDenyInode",
    "CgroupDenyIp",
    "CgroupDenyPort",
    "CgroupRef",
    "Direction",
    "Entry",
    "InodeRef",
    "IpAddress",
    "IpPortRule",
    "Policy",
    "PolicyError",
    "PortRule",
    "Protocol",
    "Section",
    "SectionKind",
]

MAX_VERSION = 6

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class PolicyError(AgentError, ValueError):
    """A policy (or bundle) was refused: ``.source`` (file name as given, or ``<stdin>``), ``.line``
    (1-based, 0 when the error is not about one line) and ``.reason``. ``str()`` reads
    ``<source>: line N: <reason>`` (``<source>: <reason>`` without a line)."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source}: line {line}: {reason}" if line else f"{source}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (PolicyError, (self.source, self.line, self.reason))


class SectionKind(enum.Enum):
    ENTRIES = "entries"
    FLAG = "flag"  # takes no entries; an entry line inside one is an error


class Section(enum.Enum):
    """Every section a policy may hold, with the version that introduced it and its kind."""

    DENY_PATH = "deny_path"
    DENY_INODE = "deny_inode"
    PROTECT_PATH = "protect_path"
    ALLOW_CGROUP = "allow_cgroup"
    DENY_IP = "deny_ip"
    DENY_CIDR = "deny_cidr"
    DENY_PORT = "deny_port"
    DENY_IP_PORT = "deny_ip_port"
    DENY_BINARY_HASH = "deny_binary_hash"
    ALLOW_BINARY_HASH = "allow_binary_hash"
    SCAN_PATHS = "scan_paths"
    DENY_COMM = "deny_comm"
    PROTECT_CONNECT = "protect_connect"
    PROTECT_RUNTIME_DEPS = "protect_runtime_deps"
    REQUIRE_IMA_APPRAISAL = "require_ima_appraisal"
    TRUSTED_EXEC_HASH = "trusted_exec_hash"
    IMA_FAIL_CLOSED = "ima_fail_closed"
    DENY_PTRACE = "deny_ptrace"
    DENY_MODULE_LOAD = "deny_module_load"
    DENY_BPF = "deny_bpf"
    CGROUP_DENY_INODE = "cgroup_deny_inode"
    CGROUP_DENY_IP = "cgroup_deny_ip"
    CGROUP_DENY_PORT = "cgroup_deny_port"

    @property
    def min_version(self) -> int:
        return _MIN_VERSION.get(self, 1)

    @property
    def kind(self) -> SectionKind:
        return SectionKind.FLAG if self in _FLAGS else SectionKind.ENTRIES


_MIN_VERSION = {
    Section.DENY_BINARY_HASH: 3, Section.ALLOW_BINARY_HASH: 3, Section.SCAN_PATHS: 3,
    Section.PROTECT_PATH: 4, Section.PROTECT_CONNECT: 4, Section.PROTECT_RUNTIME_DEPS: 4,
    Section.REQUIRE_IMA_APPRAISAL: 5, Section.TRUSTED_EXEC_HASH: 5, Section.IMA_FAIL_CLOSED: 5,
    Section.CGROUP_DENY_INODE: 6, Section.CGROUP_DENY_IP: 6, Section.CGROUP_DENY_PORT: 6,
}
_FLAGS = frozenset({
    Section.PROTECT_CONNECT, Section.PROTECT_RUNTIME_DEPS, Section.REQUIRE_IMA_APPRAISAL, Section.IMA_FAIL_CLOSED,
    Section.DENY_PTRACE, Section.DENY_MODULE_LOAD, Section.DENY_BPF,
})


class Protocol(enum.IntEnum):
    """``deny_port``/``deny_ip_port`` protocol byte (IPPROTO_* of include/uapi/linux/in.h; 0 = any)."""

    ANY = 0
    TCP = 6
    UDP = 17


class Direction(enum.IntEnum):
    """``deny_port`` direction byte: 0 egress (connect, sendmsg), 1 bind (bind, listen), 2 both."""

    EGRESS = 0
    BIND = 1
    BOTH = 2


class InodeRef(NamedTuple):
    """``dev:ino`` as written in ``[deny_inode]``: dev in kernel encoding ``major << 20 | minor``. A
    NamedTuple, as :class:`Entry`: a policy may hold 65,536 of them, and a frozen dataclass costs about
    twice as much to build."""

    dev: int
    ino: int


@dataclass(frozen=True, slots=True)
class CgroupRef:
    """A cgroup as written: exactly one of ``path`` (absolute cgroup v2 directory) or ``cgid``."""

    path: bytes | None = None
    cgid: int | None = None


@dataclass(frozen=True, slots=True)
class PortRule:
    port: int  # 1..65535
    protocol: Protocol = Protocol.ANY
    direction: Direction = Direction.BOTH


@dataclass(frozen=True, slots=True)
class IpPortRule:
    address: IpAddress
    port: int
    protocol: Protocol = Protocol.ANY


@dataclass(frozen=True, slots=True)
class CgroupDenyInode:
    cgroup: CgroupRef
    inode: InodeRef


@dataclass(frozen=True, slots=True)
class CgroupDenyIp:
    cgroup: CgroupRef
    address: ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class CgroupDenyPort:
    cgroup: CgroupRef
    rule: PortRule


#: What an entry's ``value`` is, per section:
#: deny_path, protect_path, scan_paths -> bytes (absolute path); deny_inode -> InodeRef;
#: allow_cgroup -> CgroupRef; deny_ip -> IpAddress; deny_cidr -> IpNetwork (host bits clear);
#: deny_port -> PortRule; deny_ip_port -> IpPortRule; deny_binary_hash, allow_binary_hash,
#: trusted_exec_hash -> bytes (32, the digest); deny_comm -> bytes (1..15); cgroup_deny_inode ->
#: CgroupDenyInode; cgroup_deny_ip -> CgroupDenyIp; cgroup_deny_port -> CgroupDenyPort.
EntryValue = (bytes | InodeRef | CgroupRef | IpAddress | IpNetwork | PortRule | IpPortRule | CgroupDenyInode
              | CgroupDenyIp | CgroupDenyPort)


class Entry(NamedTuple):
    """One entry: the ``line`` it came from (1-based), its ``text`` (trimmed, as written) and its ``value``."""

    line: int
    text: str
    value: EntryValue


@dataclass
class Policy:
    """A parsed policy. ``version`` (1 when the header is missing; ``version_line`` is then None);
    ``sections``: every entry section present, with its de-duplicated entries in file order (an empty
    section present in the file maps to []); ``flags``: flag section -> the line of its header;
    ``section_lines``: section -> the line of its header; ``duplicates``: (section, line, first line) of
    each entry dropped as a duplicate."""

    version: int = 1
    version_line: int | None = None
    sections: dict[Section, list[Entry]] = field(default_factory=dict)
    flags: dict[Section, int] = field(default_factory=dict)
    section_lines: dict[Section, int] = field(default_factory=dict)
    duplicates: list[tuple[Section, int, int]] = field(default_factory=list)

    def entries(self, section: Section) -> list[Entry]:
        return self.sections.get(section, [])

    def values(self, section: Section) -> list[EntryValue]:
        return [e.value for e in self.sections.get(section, [])]

    def has(self, section: Section) -> bool:
        """The section is present (a flag set, or an entry section with at least one entry)."""
        return section in self.flags or bool(self.sections.get(section))
