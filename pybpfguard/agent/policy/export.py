"""``policy export``: a policy from the live rule set (docs/policy.md).

``deny_path`` from deny.db for inodes it records a path of, ``deny_inode`` for the others,
``allow_cgroup`` as ``cgid:N`` (the agent's own cgroups left out: every apply adds them), ``deny_comm``,
and ``cgroup_deny_inode`` (which needs version 6). The version is the lowest that holds every section
written (1 unless cgroup-scoped rules exist). Allowlist mode cannot be written back as hashes: the export
says so in a comment and leaves it out.
"""

from __future__ import annotations

import os

from pybpfguard.agent import config
from pybpfguard.agent.maps import PinnedMaps
from pybpfguard.agent.policy.apply import read_set
from pybpfguard.agent.policy.model import CgroupDenyInode, CgroupRef, Entry, InodeRef, Policy, Section
from pybpfguard.agent.rules import agent_cgids
from pybpfguard.agent.statefiles import DenyDb, escape_path


def live_policy() -> tuple[Policy, list[str]]:
    """The live rule set as a Policy, and the comments that say what it cannot hold."""
    db = DenyDb(config.state_file("deny.db"))
    with PinnedMaps.open(config.pin_root(), create=False) as pins:
        content = read_set(pins.refresh_live(), db.read())
    policy = Policy()
    paths = {e.key: e.path for e in content.paths}
    policy.sections[Section.DENY_PATH] = [_entry(os.fsdecode(escape_path(p)), p) for k, p in sorted(paths.items())]
    policy.sections[Section.DENY_INODE] = [_entry(f"{dev}:{ino}", InodeRef(dev, ino))
                                           for (ino, dev) in sorted(content.deny_inode) if (ino, dev) not in paths]
    own = agent_cgids()
    policy.sections[Section.ALLOW_CGROUP] = [_entry(f"cgid:{c}", CgroupRef(cgid=c))
                                             for c in sorted(content.allow_cgroup - own)]
    policy.sections[Section.DENY_COMM] = [_entry(os.fsdecode(n), n) for n in sorted(content.deny_comm)]
    if content.cgroup_deny_inode:
        policy.version = Section.CGROUP_DENY_INODE.min_version
        policy.sections[Section.CGROUP_DENY_INODE] = [
            _entry(f"cgid:{c} {dev}:{ino}", CgroupDenyInode(CgroupRef(cgid=c), InodeRef(dev, ino)))
            for c, (ino, dev) in sorted(content.cgroup_deny_inode)]
    policy.sections = {s: e for s, e in policy.sections.items() if e}
    comments = []
    if content.allowlist:
        comments.append(f"# allowlist mode is on ({len(content.allow_exec)} allowed executables): it comes from "
                        "[allow_binary_hash], which an export cannot recover; add that section back")
    return policy, comments


def _entry(text: str, value: object) -> Entry:
    return Entry(0, text, value)  # type: ignore[arg-type]


def export_live() -> bytes:
    """The live rule set as policy text (canonical form, :func:`pybpfguard.agent.policy.lint.canonical`)."""
    from pybpfguard.agent.policy.lint import canonical

    policy, comments = live_policy()
    text = canonical(policy)
    return "".join(f"{c}\n" for c in comments).encode() + text
