"""Environment variables and filesystem locations (docs/maps.md).

Every variable is read as ``PYBPFGUARD_<X>``, falling back to AegisBPF's ``AEGIS_<X>`` -- except location
variables (``PIN_ROOT``, ``STATE_DIR``, ``CONFIG_DIR``, ``KEYS_DIR``, ``AGENT_CGROUP`` and every ``*_PATH``),
which have no fallback so pybpfguard never touches AegisBPF's directories.
"""

from __future__ import annotations

import os
from pathlib import Path

_NO_FALLBACK = {"PIN_ROOT", "STATE_DIR", "CONFIG_DIR", "KEYS_DIR", "AGENT_CGROUP"}
_TRUE = {"1", "true", "yes", "on"}


def env(name: str, default: str | None = None) -> str | None:
    """``PYBPFGUARD_<name>``, else ``AEGIS_<name>`` (not for location variables), else *default*."""
    value = os.environ.get(f"PYBPFGUARD_{name}")
    if value is not None:
        return value
    if name not in _NO_FALLBACK and not name.endswith("_PATH"):
        value = os.environ.get(f"AEGIS_{name}")
        if value is not None:
            return value
    return default


def env_flag(name: str) -> bool:
    """True when the variable is ``1|true|yes|on`` (case-insensitive)."""
    return (env(name) or "").strip().lower() in _TRUE


def pin_root() -> Path:
    """bpffs directory holding every pinned map the CLI and the daemon share."""
    return Path(env("PIN_ROOT") or "/sys/fs/bpf/pybpfguard")


def state_dir() -> Path:
    return Path(env("STATE_DIR") or "/var/lib/pybpfguard")


def config_dir() -> Path:
    return Path(env("CONFIG_DIR") or "/etc/pybpfguard")


def state_file(name: str) -> Path:
    """A state file (``deny.db``, ``policy.applied`` ...); ``PYBPFGUARD_<NAME>_PATH`` overrides it."""
    key = name.upper().replace(".", "_").replace("-", "_")
    override = env(f"{key}_PATH")
    return Path(override) if override else state_dir() / name


def agent_cgroup() -> Path:
    """The agent's cgroup outside systemd: ``PYBPFGUARD_AGENT_CGROUP``, else ``pybpfguard_agent`` under the
    cgroup2 mount (found in /proc/self/mountinfo: ``/sys/fs/cgroup`` on unified hosts, ``.../unified`` on
    hybrid ones)."""
    configured = env("AGENT_CGROUP")
    if configured:
        return Path(configured)
    from pybpfguard.agent.cgroups import cgroup2_mount

    return Path(os.fsdecode(cgroup2_mount())) / "pybpfguard_agent"


def lsm_path() -> Path:
    """Test seam for the LSM list (default /sys/kernel/security/lsm)."""
    return Path(env("LSM_PATH") or "/sys/kernel/security/lsm")


def journal_socket() -> str:
    """journald's native socket; ``PYBPFGUARD_JOURNAL_SOCKET_PATH`` points the journald sink elsewhere."""
    return env("JOURNAL_SOCKET_PATH") or "/run/systemd/journal/socket"
