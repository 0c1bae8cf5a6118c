"""Lint advisories and the canonical form of a parsed policy (docs/policy.md, "Policy files").

Advisories are warnings, never errors: the policy is valid and applies as written. The one filesystem check
is whether the paths a policy names exist on this host, and only with ``host=True``.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from pybpfguard.agent.maps import DENY_PATH_KEY_BYTES
from pybpfguard.agent.policy.model import (
    CgroupDenyInode,
    CgroupDenyIp,
    CgroupDenyPort,
    CgroupRef,
    EntryValue,
    InodeRef,
    IpPortRule,
    Policy,
    PortRule,
    Section,
)
from pybpfguard.agent.policy.parse import DIRECTION_NAMES, PROTOCOL_NAMES
from pybpfguard.agent.policy.support import DIRECTORY_RULE, unsupported
from pybpfguard.agent.survival import SURVIVAL_NAMES

__all__ = ["SECTION_ORDER", "Advisory", "advisories", "canonical", "entry_text"]

#: The order of sections in the canonical form: the order of :class:`Section`'s definition.
SECTION_ORDER: tuple[Section, ...] = tuple(Section)

_KERNEL_TOGGLES = (Section.DENY_PTRACE, Section.DENY_MODULE_LOAD, Section.DENY_BPF)
_FILE_RULES = (Section.DENY_PATH, Section.DENY_INODE, Section.PROTECT_PATH, Section.CGROUP_DENY_INODE)
_PROTECT = (Section.PROTECT_PATH, Section.PROTECT_CONNECT, Section.PROTECT_RUNTIME_DEPS)
_VERIFYING_HASHES = (Section.ALLOW_BINARY_HASH, Section.TRUSTED_EXEC_HASH)
_HASH_SECTIONS = frozenset({Section.DENY_BINARY_HASH, Section.ALLOW_BINARY_HASH, Section.TRUSTED_EXEC_HASH})
_PROTOCOL_TEXT = {protocol: name for name, protocol in PROTOCOL_NAMES.items()}
_DIRECTION_TEXT = {direction: name for name, direction in DIRECTION_NAMES.items() if name != "connect"}


@dataclass(frozen=True, slots=True)
class Advisory:
    """One lint finding: ``line`` (1-based; 0 when it is about the whole file), ``message``, and ``notice``
    (True for "accepted but not enforced by this release", False for a lint warning)."""

    line: int
    message: str
    notice: bool = False


# --- advisories ----------------------------------------------------------------------------------------


def _first_line(policy: Policy, sections: tuple[Section, ...]) -> int:
    return min(policy.section_lines[s] for s in sections if policy.has(s))


def _both_deny_and_protect(policy: Policy) -> Iterator[Advisory]:
    denied = {e.value: e.line for e in policy.entries(Section.DENY_PATH)}
    for entry in policy.entries(Section.PROTECT_PATH):
        if entry.value in denied:
            yield Advisory(entry.line, f"{entry.text} is in both [deny_path] (line {denied[entry.value]}) and "
                                       "[protect_path]; deny_path already denies it to every process")


def _ip_inside_cidr(policy: Policy) -> Iterator[Advisory]:
    # Group the networks by (version, prefix length), so each address costs one lookup per prefix length.
    networks: dict[tuple[int, int], dict[int, tuple[str, int]]] = {}
    for entry in policy.entries(Section.DENY_CIDR):
        net = entry.value
        if not isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network):
            continue
        networks.setdefault((net.version, net.prefixlen), {}).setdefault(
            int(net.network_address), (entry.text, entry.line))
    for entry in policy.entries(Section.DENY_IP):
        address = entry.value
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            continue
        for (version, prefix), by_start in networks.items():
            host_bits = address.max_prefixlen - prefix
            if version == address.version and (hit := by_start.get(int(address) >> host_bits << host_bits)):
                yield Advisory(entry.line, f"{entry.text} is already covered by [deny_cidr] {hit[0]} "
                                           f"(line {hit[1]})")
                break


def _flag_advisories(policy: Policy) -> Iterator[Advisory]:
    if policy.has(Section.DENY_BPF) and not policy.has(Section.DENY_MODULE_LOAD):
        yield Advisory(policy.flags[Section.DENY_BPF], "[deny_bpf] without [deny_module_load]: a kernel module "
                                                       "can still tamper with the BPF programs")
    if any(policy.has(s) for s in _KERNEL_TOGGLES) and not any(policy.has(s) for s in _FILE_RULES):
        yield Advisory(_first_line(policy, _KERNEL_TOGGLES),
                       "kernel-tamper flags with no file rule ([deny_path], [deny_inode], [protect_path], "
                       "[cgroup_deny_inode]): nothing on disk is protected")
    if any(policy.has(s) for s in _PROTECT) and not any(policy.has(s) for s in _VERIFYING_HASHES):
        yield Advisory(_first_line(policy, _PROTECT),
                       "protect_* without a binary-hash list ([allow_binary_hash] or [trusted_exec_hash]): no "
                       "process can be VERIFIED_EXEC, so every process is treated as unverified")


def _bytes(policy: Policy, *sections: Section) -> Iterator[tuple[int, bytes]]:
    """(line, value) of every entry of *sections* whose value is bytes (paths, comms)."""
    for section in sections:
        for entry in policy.entries(section):
            if isinstance(entry.value, bytes):
                yield entry.line, entry.value


def _survival_comms(policy: Policy) -> Iterator[Advisory]:
    for line, comm in _bytes(policy, Section.DENY_COMM):
        if os.fsdecode(comm) in SURVIVAL_NAMES:
            yield Advisory(line, f"deny_comm {os.fsdecode(comm)} names a survival-list binary; denying its exec "
                                 "can lock init, the package manager or remote access out of the host")


def _long_paths(policy: Policy) -> Iterator[Advisory]:
    for line, path in _bytes(policy, Section.DENY_PATH, Section.PROTECT_PATH):
        if len(path) >= DENY_PATH_KEY_BYTES:
            yield Advisory(line, f"path is {len(path)} bytes, too long for the {DENY_PATH_KEY_BYTES}-byte path "
                                 "map: enforced by inode alone (not by the tracepoint fallback)")


def _named_paths(policy: Policy) -> Iterator[tuple[int, bytes]]:
    """(line, path) of every filesystem path the policy names: rule paths, scan roots, cgroup directories."""
    yield from _bytes(policy, Section.DENY_PATH, Section.PROTECT_PATH, Section.SCAN_PATHS)
    for section in (Section.ALLOW_CGROUP, Section.CGROUP_DENY_INODE, Section.CGROUP_DENY_IP,
                    Section.CGROUP_DENY_PORT):
        for entry in policy.entries(section):
            value = entry.value
            ref = value.cgroup if isinstance(value, CgroupDenyInode | CgroupDenyIp | CgroupDenyPort) else value
            if isinstance(ref, CgroupRef) and ref.path is not None:
                yield entry.line, ref.path


def _missing_paths(policy: Policy) -> Iterator[Advisory]:
    rule_lines = {line for line, _ in _bytes(policy, Section.DENY_PATH, Section.PROTECT_PATH)}
    for line, path in _named_paths(policy):
        try:
            st = os.stat(path)
        except OSError as err:
            yield Advisory(line, f"{os.fsdecode(path)} does not exist on this host ({err.strerror})")
            continue
        if line in rule_lines and stat.S_ISDIR(st.st_mode):
            yield Advisory(line, f"{os.fsdecode(path)} {DIRECTORY_RULE}")


def advisories(policy: Policy, *, host: bool = True) -> list[Advisory]:
    """Every lint advisory of *policy* plus a notice per section this release does not enforce, sorted by
    line. With *host*, also the paths that do not exist on this host (the only filesystem access)."""
    found: list[Advisory] = []
    if policy.version_line is None:
        found.append(Advisory(0, "no version header; the policy is read as version=1 (add version=N first)"))
    found += (Advisory(line, f"duplicate [{section.value}] entry (first at line {first}); dropped")
              for section, line, first in policy.duplicates)
    found += _both_deny_and_protect(policy)
    found += _ip_inside_cidr(policy)
    found += _flag_advisories(policy)
    found += _survival_comms(policy)
    found += _long_paths(policy)
    if host:
        found += _missing_paths(policy)
    found += (Advisory(line, f"[{section.value}] is accepted but not enforced by this release ({reason}); "
                             "policy apply refuses it", notice=True)
              for section, line, reason in unsupported(policy))
    return sorted(found, key=lambda a: a.line)


# --- canonical form ------------------------------------------------------------------------------------


def _cgroup_text(ref: CgroupRef) -> str:
    return f"cgid:{ref.cgid}" if ref.path is None else ref.path.decode()


def _port_text(rule: PortRule) -> str:
    return f"{rule.port}:{_PROTOCOL_TEXT[rule.protocol]}:{_DIRECTION_TEXT[rule.direction]}"


def entry_text(section: Section, value: EntryValue) -> str:
    """The canonical spelling of one entry of *section*: ``sha256:`` and lower-case hex, compressed IPv6,
    every port field spelled out (``443:any:both``), ``connect`` written ``egress``, IPv6 bracketed in
    ``deny_ip_port``, one space between a cgroup and its rule."""
    match value:
        case bytes() if section in _HASH_SECTIONS:
            return f"sha256:{value.hex()}"
        case bytes():
            return value.decode()
        case InodeRef(dev=dev, ino=ino):
            return f"{dev}:{ino}"
        case CgroupRef():
            return _cgroup_text(value)
        case PortRule():
            return _port_text(value)
        case IpPortRule(address=address, port=port, protocol=protocol):
            host = f"[{address}]" if address.version == 6 else str(address)
            return f"{host}:{port}:{_PROTOCOL_TEXT[protocol]}"
        case CgroupDenyInode(cgroup=cgroup, inode=inode):
            return f"{_cgroup_text(cgroup)} {inode.dev}:{inode.ino}"
        case CgroupDenyIp(cgroup=cgroup, address=address):
            return f"{_cgroup_text(cgroup)} {address}"
        case CgroupDenyPort(cgroup=cgroup, rule=rule):
            return f"{_cgroup_text(cgroup)} {_port_text(rule)}"
    return str(value)  # an address or a network: ipaddress's canonical text


def _cgroup_key(ref: CgroupRef) -> tuple[int, bytes, int]:
    return (0, ref.path, 0) if ref.path is not None else (1, b"", ref.cgid or 0)


def _sort_key(value: EntryValue) -> tuple[object, ...]:
    """Values of one section sort by what they mean: numbers as numbers, addresses by family then value."""
    match value:
        case bytes():
            return (value,)
        case InodeRef(dev=dev, ino=ino):
            return (dev, ino)
        case CgroupRef():
            return _cgroup_key(value)
        case ipaddress.IPv4Address() | ipaddress.IPv6Address():
            return (value.version, int(value))
        case ipaddress.IPv4Network() | ipaddress.IPv6Network():
            return (value.version, int(value.network_address), value.prefixlen)
        case PortRule(port=port, protocol=protocol, direction=direction):
            return (port, protocol, direction)
        case IpPortRule(address=address, port=port, protocol=protocol):
            return (address.version, int(address), port, protocol)
        case CgroupDenyInode(cgroup=cgroup, inode=inode):
            return (*_cgroup_key(cgroup), inode.dev, inode.ino)
        case CgroupDenyIp(cgroup=cgroup, address=address):
            return (*_cgroup_key(cgroup), int(address))
        case CgroupDenyPort(cgroup=cgroup, rule=rule):
            return (*_cgroup_key(cgroup), *_sort_key(rule))
    raise TypeError(f"not a policy entry value: {value!r}")


def canonical(policy: Policy) -> bytes:
    """The canonical text of *policy* (UTF-8, ``\\n`` line ends): ``version=N`` first, then the sections
    present in :data:`SECTION_ORDER` (flags as a bare header; entry sections without entries left out),
    each distinct value once, sorted by value (numbers as numbers), in its canonical spelling
    (:func:`entry_text`); comments dropped. ``canonical(parse_policy(canonical(p), s)) == canonical(p)``,
    and the text parses to the same values."""
    lines = [f"version={policy.version}"]
    for section in SECTION_ORDER:
        if section in policy.flags:
            lines.append(f"[{section.value}]")
        elif values := policy.values(section):
            lines.append(f"[{section.value}]")
            lines += (entry_text(section, v) for v in sorted(set(values), key=_sort_key))
    return ("\n".join(lines) + "\n").encode()
