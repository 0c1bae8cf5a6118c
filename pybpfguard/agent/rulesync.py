"""How a rule edit reaches the running daemon, and how the editor learns that it did.

Every rule edit (``block``/``allow`` and, later, ``policy apply``) runs under one ``flock`` (the
``rules.lock`` file beside ``deny.db``: whoever can change the rules' record sees the same lock) and ends
by incrementing the edit generation in the pinned ``rule_sync`` array. The daemon reads that generation on
every turn of its loop (at most 100 ms apart), brings its user-space enforcement up to date when it moved,
and writes back the generation it applied, plus a heartbeat. Pins live on bpffs, so this works where the
daemon's Unix socket cannot be reached (another mount namespace); the socket only makes it faster.

``rule_sync`` (``BPF_MAP_TYPE_ARRAY``, u32 key -> u64 value), one writer per slot:

| key | written by | value |
| --- | --- | --- |
| 0 ``GENERATION`` | rule editors, under the lock | edits so far |
| 1 ``APPLIED`` | the daemon | the generation its enforcement reflects |
| 2 ``HEARTBEAT_NS`` | the daemon | ``CLOCK_BOOTTIME`` ns of its last loop turn; 0 once it stopped |
| 3 ``DAEMON_PID`` | the daemon | its pid (in its own pid namespace) |

An edit then ends in one of three outcomes (docs/architecture.md, "Rules shared between processes"):
enforced (a live daemon acknowledged the generation, exit 0), stored but not confirmed (no live daemon, or
none acknowledged in time: exit 4), or failed (exit 1).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from pybpfguard.agent.instance import request_sync
from pybpfguard.agent.trust import require_private_dir, require_private_file
from pybpfguard.bpf.maps import Map

__all__ = ["DaemonSync", "Outcome", "bump_generation", "confirm", "edit_lock"]

GENERATION, APPLIED, HEARTBEAT_NS, DAEMON_PID = 0, 1, 2, 3
SLOTS = 4
LOCK_NAME = "rules.lock"
HEARTBEAT_EVERY_S = 0.25  # the daemon's beat; a beat older than STALE_AFTER_S means no live daemon
STALE_AFTER_S = 1.5
CONFIRM_TIMEOUT_S = 2.0
LOCK_TIMEOUT_S = 30.0  # an edit holds the lock for milliseconds; this long means its holder is stuck


class Outcome(enum.Enum):
    """What a finished rule edit achieved."""

    ENFORCED = "enforced"  # a live daemon acknowledged it (or there is nothing for a daemon to do)
    STORED = "stored"  # in the pinned maps and state files, but no running daemon confirmed it


def boottime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


@contextlib.contextmanager
def edit_lock(deny_db: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the rule-edit lock (``flock(LOCK_EX)`` on ``rules.lock`` beside *deny_db*) for the block.

    Serialises every rule edit across processes, so parallel edits never lose each other's lines of
    deny.db. An edit holds it for milliseconds, so waiting longer than *timeout_s* means a stuck holder:
    TimeoutError naming the lock file, rather than a command that hangs. Raises UntrustedPathError when the
    directory or the lock file could be changed or held by another user."""
    directory = require_private_dir(deny_db.parent)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        require_private_file(path)  # one another user may open could be held by them forever
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{path}: another rule edit holds the lock (waited {timeout_s:g} s); "
                                       "retry, or find the process holding it (fuser)") from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)  # releases the lock


def bump_generation(rule_sync: Map) -> int:
    """Count one more edit (call with the edit lock held); returns the new generation."""
    generation = rule_sync.lookup_elem(GENERATION) + 1
    rule_sync.update_elem(GENERATION, generation)
    return generation


def daemon_alive(rule_sync: Map, now_ns: int | None = None) -> bool:
    """Whether a daemon beat recently on these pins."""
    beat = rule_sync.lookup_elem(HEARTBEAT_NS)
    now = boottime_ns() if now_ns is None else now_ns
    return beat != 0 and now - beat < STALE_AFTER_S * 1e9


def confirm(rule_sync: Map, generation: int, pin_root: Path,
            timeout_s: float = CONFIRM_TIMEOUT_S) -> tuple[Outcome, str]:
    """Wait (at most *timeout_s*) for a live daemon to acknowledge *generation*.

    Asks it over its socket first (immediate where reachable), then watches ``APPLIED``; returns at once
    when no daemon beats. Returns (outcome, why a live daemon left it only STORED, else ""): a daemon that
    answers it could not apply the edit leaves it stored (it retries by itself), never failed, since the
    edit is recorded."""
    deadline = time.monotonic() + timeout_s
    if not daemon_alive(rule_sync):
        return Outcome.STORED, ""
    reason = f"the running daemon did not confirm it within {timeout_s:g} s"
    try:
        request_sync(pin_root, timeout_s=timeout_s)
    except OSError:
        pass  # unreachable from here (another mount namespace, a stopped daemon): the pins still carry it
    except RuntimeError as err:  # reachable, and it said it failed
        reason = str(err)
    while True:
        if rule_sync.lookup_elem(APPLIED) >= generation:
            return Outcome.ENFORCED, ""
        if time.monotonic() >= deadline:
            return Outcome.STORED, reason
        if not daemon_alive(rule_sync):
            return Outcome.STORED, "the daemon stopped before it confirmed it"
        time.sleep(0.02)


class DaemonSync:
    """The daemon's side: notice edits made by any process, acknowledge them, beat."""

    def __init__(self, rule_sync: Map) -> None:
        self.map = rule_sync
        self._next_beat = 0.0

    def generation(self) -> int:
        return self.map.lookup_elem(GENERATION)

    def pending(self) -> bool:
        """True when an edit happened since the last acknowledged generation."""
        return self.map.lookup_elem(GENERATION) != self.map.lookup_elem(APPLIED)

    def acknowledge(self, generation: int) -> None:
        self.map.update_elem(APPLIED, generation)

    def beat(self, now: float) -> None:
        """Write the heartbeat when due (*now*: time.monotonic())."""
        if now < self._next_beat:
            return
        self._next_beat = now + HEARTBEAT_EVERY_S
        self.map.update_elem(DAEMON_PID, os.getpid())
        self.map.update_elem(HEARTBEAT_NS, boottime_ns())

    def stopped(self) -> None:
        """Say no daemon beats here any more (editors then stop waiting at once)."""
        self.map.update_elem(HEARTBEAT_NS, 0)
