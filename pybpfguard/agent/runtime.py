"""The daemon's published posture: ``/run/pybpfguard/<pin-root key>.runtime.json`` beside its lock, written
at start and on each transition, removed on a clean exit. Readers trust it only while the daemon still
holds the pin root's lock, so a stale file (a SIGKILLed daemon, a reused pid) never claims enforcement
(No-Pretend, docs/enforcement.md), and two daemons on two pin roots never hide each other."""

from __future__ import annotations

import msgspec

from pybpfguard.agent import config
from pybpfguard.agent.instance import lock_holder, runtime_path
from pybpfguard.agent.posture import Posture
from pybpfguard.agent.statefiles import write_atomic

HOOKS = ("exec", "fork", "exit", "file_open")


class RuntimeStatus(msgspec.Struct, kw_only=True):
    """What the daemon writes to runtime.json."""

    pid: int
    mode: str  # requested: audit | enforce
    state: str  # Posture value
    detail: str  # class=mechanism list
    enforce_capable: bool
    hooks: dict[str, str]  # name -> attached | missing | not_requested
    agent_cgid: int  # the daemon's own cgroup, always in allow_cgroup (``block clear`` keeps it)
    # denied inodes the daemon cannot enforce, ``"<dev>:<ino>"`` -> reason (``block list``, ``health``)
    unenforced: dict[str, str] = msgspec.field(default_factory=dict)


def write_runtime(status: RuntimeStatus) -> None:
    write_atomic(runtime_path(config.pin_root()), msgspec.json.encode(status))


def remove_runtime() -> None:
    runtime_path(config.pin_root()).unlink(missing_ok=True)


def read_runtime() -> RuntimeStatus | None:
    """The status of the daemon running on this pin root, or None (none holds its lock, or no file)."""
    root = config.pin_root()
    holder = lock_holder(root)
    if holder is None:
        return None
    try:
        status = msgspec.json.decode(runtime_path(root).read_bytes(), type=RuntimeStatus)
    except (OSError, msgspec.DecodeError):
        return None
    return status if status.pid == holder else None  # written by this holder, not a killed predecessor


def posture_caveat() -> str | None:
    """For an editor whose edit the running daemon just confirmed: what the daemon's published posture says
    it does not enforce (audit mode, AUDIT_FALLBACK, DEGRADED with its faults), else None (also when the
    status cannot be read, e.g. from another mount namespace)."""
    status = read_runtime()
    if status is None:
        return None
    if status.mode == "audit":
        return "the running daemon audits only (it was started without --enforce): rules are logged, never denied"
    if Posture(status.state) in (Posture.AUDIT_FALLBACK, Posture.DEGRADED):
        return (f"the running daemon's posture is {status.state} ({status.detail}): not every rule is enforced; "
                "`health` says what is missing")
    return None
