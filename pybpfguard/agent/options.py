"""``run`` options (docs/cli.md), parsed from argv strings into typed values at the edge."""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass

from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.events.sinks import LogTarget


class UsageError(AgentError, ValueError):
    """A bad option value: the CLI exits 2 with this message."""


class GateMode(enum.StrEnum):
    """``--enforce-gate-mode``: what ``run --enforce`` does when nothing can enforce (docs/cli.md)."""

    FAIL_CLOSED = "fail-closed"  # exit 3
    AUDIT_FALLBACK = "audit-fallback"  # run with the kernel side in audit, posture AUDIT_FALLBACK


class EnforceFallback(enum.StrEnum):
    """``--enforce-fallback``: without BPF LSM or fanotify, kill denied executables at exec, or not."""

    SIGNAL = "signal"
    OFF = "off"


class LsmHook(enum.StrEnum):
    """``--lsm-hook``: the LSM hooks file rules use (docs/enforcement.md)."""

    FILE = "file"
    INODE = "inode"
    BOTH = "both"


class HookState(enum.StrEnum):
    """What became of one hook, as ``health`` and the runtime status report it."""

    ATTACHED = "attached"
    MISSING = "missing"
    NOT_REQUESTED = "not_requested"


class EnforceSignal(enum.Enum):
    """Signal sent with -EPERM; the ``action`` it produces in events (docs/events.md)."""

    NONE = 0
    INT = signal.SIGINT
    KILL = signal.SIGKILL
    TERM = signal.SIGTERM

    @property
    def action(self) -> str:
        return "BLOCK" if self is EnforceSignal.NONE else self.name


_SIGNAL_WORDS = {
    "none": EnforceSignal.NONE, "block": EnforceSignal.NONE, "0": EnforceSignal.NONE,
    "term": EnforceSignal.TERM, "sigterm": EnforceSignal.TERM, "15": EnforceSignal.TERM,
    "kill": EnforceSignal.KILL, "sigkill": EnforceSignal.KILL, "9": EnforceSignal.KILL,
    "int": EnforceSignal.INT, "sigint": EnforceSignal.INT, "2": EnforceSignal.INT,
}

def parse_signal(text: str) -> EnforceSignal:
    try:
        return _SIGNAL_WORDS[text.strip().lower()]
    except KeyError:
        raise UsageError(f"--enforce-signal: {text!r} is not one of none, term, kill, int") from None


RINGBUF_MAX_BYTES = 1 << 31  # max_entries is a u32 and must be a power of two (kernel/bpf/ringbuf.c)


def round_ringbuf(size: int) -> int:
    """Round up to a power of two >= 4096 (the kernel wants a page-multiple power of two), at most 2 GiB."""
    if size <= 0:
        raise UsageError(f"--ringbuf-bytes must be positive, got {size}")
    rounded = max(4096, 1 << (size - 1).bit_length())
    if rounded > RINGBUF_MAX_BYTES:
        raise UsageError(f"--ringbuf-bytes={size}: the ring holds at most {RINGBUF_MAX_BYTES} bytes (2 GiB)")
    return rounded


@dataclass(frozen=True)
class RunOptions:
    enforce: bool = False
    enforce_signal: EnforceSignal = EnforceSignal.TERM
    allow_sigkill: bool = False
    kill_escalation_threshold: int = 5
    kill_escalation_window_s: int = 30
    enforce_gate_mode: GateMode = GateMode.FAIL_CLOSED
    enforce_fallback: EnforceFallback = EnforceFallback.OFF
    strict_degrade: bool = False
    lsm_hook: LsmHook = LsmHook.FILE
    ringbuf_bytes: int = 16 << 20
    event_sample_rate: int = 1
    log: frozenset[LogTarget] = frozenset({LogTarget.STDOUT})
    max_deny_inodes: int = 65536
    max_deny_paths: int = 16384

    def __post_init__(self) -> None:
        if self.enforce_signal is EnforceSignal.KILL and not self.allow_sigkill:
            raise UsageError("--enforce-signal=kill needs --allow-sigkill")
        if self.event_sample_rate < 1:
            raise UsageError(f"--event-sample-rate must be >= 1, got {self.event_sample_rate}")
        if self.kill_escalation_threshold < 1 or self.kill_escalation_window_s < 1:
            raise UsageError("--kill-escalation-threshold and --kill-escalation-window-seconds must be >= 1")
        for option, value, kind in (("--lsm-hook", self.lsm_hook, LsmHook),
                                    ("--enforce-gate-mode", self.enforce_gate_mode, GateMode),
                                    ("--enforce-fallback", self.enforce_fallback, EnforceFallback)):
            if not isinstance(value, kind):
                raise UsageError(f"{option}: {value!r} is not one of {', '.join(k.value for k in kind)}")
