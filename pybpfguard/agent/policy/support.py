"""Which policy sections this release enforces (docs/policy.md, "Policy files").

``lint`` and ``validate`` accept every section of the format and print a notice for each one listed in
:data:`NOT_ENFORCED`; ``apply`` refuses a policy holding any of them, naming the section and its line, so
no rule is ever silently ignored.
"""

from __future__ import annotations

from pybpfguard.agent.policy.model import Policy, Section

__all__ = ["DIRECTORY_RULE", "NOT_ENFORCED", "unsupported"]

#: what a [deny_path] or [protect_path] entry naming a directory does (lint advisory and apply note): file
#: rules are on the inode opened, and reaching a file through a directory does not open the directory
DIRECTORY_RULE = ("is a directory: the rule denies opening the directory itself (listing it), not the files in "
                  "it; list each file")

_NETWORK = "network enforcement is not in this release"
_VERIFIED_EXEC = "VERIFIED_EXEC (the exec-identity state protect_* rules rely on) is not computed yet"
_IMA = "IMA-based exec checks are not in this release"
_KERNEL_TAMPER = "the kernel-tamper hooks are not in this release"

#: section -> why this release does not enforce it
NOT_ENFORCED: dict[Section, str] = {
    Section.DENY_IP: _NETWORK,
    Section.DENY_CIDR: _NETWORK,
    Section.DENY_PORT: _NETWORK,
    Section.DENY_IP_PORT: _NETWORK,
    Section.CGROUP_DENY_IP: _NETWORK,
    Section.CGROUP_DENY_PORT: _NETWORK,
    Section.PROTECT_PATH: _VERIFIED_EXEC,
    Section.PROTECT_CONNECT: _VERIFIED_EXEC,
    Section.PROTECT_RUNTIME_DEPS: _VERIFIED_EXEC,
    Section.REQUIRE_IMA_APPRAISAL: _IMA,
    Section.TRUSTED_EXEC_HASH: _IMA,
    Section.IMA_FAIL_CLOSED: _IMA,
    Section.DENY_PTRACE: _KERNEL_TAMPER,
    Section.DENY_MODULE_LOAD: _KERNEL_TAMPER,
    Section.DENY_BPF: _KERNEL_TAMPER,
}


def unsupported(policy: Policy) -> list[tuple[Section, int, str]]:
    """(section, line of its header, reason) for each section of *policy* this release does not enforce,
    in file order. A section counts when :meth:`Policy.has` it (a flag, or at least one entry): an empty
    entry section asks for nothing."""
    found = [(section, line, NOT_ENFORCED[section]) for section, line in policy.section_lines.items()
             if section in NOT_ENFORCED and policy.has(section)]
    return sorted(found, key=lambda item: item[1])

