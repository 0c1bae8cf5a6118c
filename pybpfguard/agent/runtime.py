"""The daemon's published posture: ``<state dir>/runtime.json``, written at start and on each transition,
removed on a clean exit; ``health`` trusts it only while that daemon's process is alive, so a stale file
never claims enforcement (No-Pretend, REFERENCE §6.4)."""

from __future__ import annotations

import os

import msgspec

from pybpfguard.agent import config

HOOKS = ("exec", "fork", "exit", "file_open")
RUNTIME_FILE = "runtime.json"


class RuntimeStatus(msgspec.Struct, kw_only=True):
    """What the daemon writes to runtime.json."""

    pid: int
    mode: str  # requested: audit | enforce
    state: str  # Posture value
    detail: str  # class=mechanism list
    enforce_capable: bool
    hooks: dict[str, str]  # name -> attached | missing | not_requested


def write_runtime(status: RuntimeStatus) -> None:
    path = config.state_file(RUNTIME_FILE)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(msgspec.json.encode(status))
    os.replace(tmp, path)


def remove_runtime() -> None:
    config.state_file(RUNTIME_FILE).unlink(missing_ok=True)


def read_runtime() -> RuntimeStatus | None:
    """The live daemon's status, or None (no file, unreadable, or its process is gone)."""
    try:
        status = msgspec.json.decode(config.state_file(RUNTIME_FILE).read_bytes(), type=RuntimeStatus)
    except (OSError, msgspec.DecodeError):
        return None
    try:
        os.kill(status.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return status
