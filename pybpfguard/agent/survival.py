"""The survival allowlist (docs/enforcement.md): target inodes no rule can deny.

At start-up the agent adds the executable inode (``/proc/<pid>/exe``) of every running process whose
basename is on the list below, plus PID 1's, at most 256 entries, so a bad policy cannot lock the host
out of its init, shells, remote access or package manager.
"""

from __future__ import annotations

import os

from pybpfguard.agent.paths import kernel_dev

SURVIVAL_NAMES = frozenset({
    "init", "systemd", "kubelet", "sshd", "ssh", "containerd", "runc", "crio", "dockerd", "apt", "apt-get",
    "dpkg", "yum", "dnf", "rpm", "sh", "bash", "dash", "sudo", "su", "reboot", "shutdown",
})
SURVIVAL_MAX = 256


def survival_inodes(proc: str = "/proc") -> dict[tuple[int, int], str]:
    """``{(ino, kernel dev): exe path}`` of the survival binaries running now (PID 1's first)."""
    found: dict[tuple[int, int], str] = {}
    pids = sorted(int(p) for p in os.listdir(proc) if p.isdigit())
    for pid in pids:
        exe = f"{proc}/{pid}/exe"
        try:
            target = os.readlink(exe)
            if pid != 1 and os.path.basename(target).removesuffix(" (deleted)") not in SURVIVAL_NAMES:
                continue
            st = os.stat(exe)
        except OSError:
            continue  # a kernel thread, or the process exited meanwhile
        found.setdefault((st.st_ino, kernel_dev(st.st_dev)), target)
        if len(found) >= SURVIVAL_MAX:
            break
    return found
