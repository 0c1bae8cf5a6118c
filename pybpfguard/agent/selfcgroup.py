"""The agent's own cgroup (docs/architecture.md): always in ``allow_cgroup``.

Under systemd (the process already sits in a ``*.service`` cgroup) the agent allowlists that cgroup and
stays there, so journald keeps attributing its entries to ``aegisbpf.service``. Elsewhere it creates the
agent cgroup (``PYBPFGUARD_AGENT_CGROUP``, default ``<cgroup2 mount>/pybpfguard_agent``), moves itself in,
and on exit moves back and removes it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pybpfguard.agent.cgroups import cgroup2_mount
from pybpfguard.agent.config import agent_cgroup
from pybpfguard.agent.errors import AgentError


def own_cgroup() -> Path:
    """This process's cgroup v2 directory (from ``/proc/self/cgroup``, line ``0::<path>``)."""
    mount = Path(os.fsdecode(cgroup2_mount()))
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return mount / line[3:].strip().lstrip("/")
    return mount


class AgentCgroupError(AgentError, RuntimeError):
    """The configured agent cgroup cannot be used (the message names the path and why)."""


class AgentCgroup:
    """Puts the agent in its own cgroup (unless under a systemd unit); ``cgid`` is what to allowlist."""

    def __init__(self) -> None:
        self.original = own_cgroup()
        self.created: Path | None = None
        if self.original.name.endswith(".service"):
            self.path = self.original
        else:
            self.path = agent_cgroup()
            mount = Path(os.fsdecode(cgroup2_mount()))
            if mount not in self.path.parents:
                raise AgentCgroupError(f"agent cgroup {self.path} is not under the cgroup2 mount {mount} "
                                       "(PYBPFGUARD_AGENT_CGROUP)")
            if not self.path.exists():
                self.path.mkdir()
            self.created = self.path  # ours, even if a killed run left it: removed on exit when empty
            (self.path / "cgroup.procs").write_text(str(os.getpid()))
        self.cgid = os.stat(self.path).st_ino

    def close(self) -> bool:
        """Move back to where the agent started and remove the cgroup it created; True when it is gone."""
        if self.path == self.original:
            return False
        with contextlib.suppress(OSError):
            (self.original / "cgroup.procs").write_text(str(os.getpid()))
        if self.created is not None:
            try:
                self.created.rmdir()
            except OSError:
                return False  # other processes still inside: leave it
            self.created = None
            return True
        return False
