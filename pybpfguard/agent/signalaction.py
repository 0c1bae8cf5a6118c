"""The signal that goes with a denial (docs/enforcement.md "Signals and escalation"), for the fanotify
responders: what to send, sending it, and the action the event reports."""

from __future__ import annotations

import os
import signal
import time
from typing import Protocol

from pybpfguard.agent.events.model import Action
from pybpfguard.agent.guard_model import ProcessIdentity
from pybpfguard.agent.options import EnforceSignal

__all__ = ["Striker", "enforce_signal_action"]

_SIGNALS = {Action.TERM: signal.SIGTERM, Action.KILL: signal.SIGKILL, Action.INT: signal.SIGINT}
_FIXED_ACTION = {EnforceSignal.NONE: Action.BLOCK, EnforceSignal.TERM: Action.TERM, EnforceSignal.INT: Action.INT}


class Striker(Protocol):
    """TERM -> KILL escalation per process (pybpfguard.agent.file_guard.Escalation)."""

    def strike(self, key: tuple[int, int], now_ns: int) -> Action: ...


def enforce_signal_action(escalation: Striker, pid: int, ident: ProcessIdentity | None,
                          sig: EnforceSignal) -> Action:
    """Send *sig* to *pid* (KILL escalates from TERM through *escalation*, keyed by pid and start time) and
    return the action actually taken: BLOCK for no signal, or when sending was refused (the denial stands);
    a process already gone still counts the signal as sent."""
    if sig is EnforceSignal.KILL:
        action = escalation.strike((pid, ident.start_time if ident is not None else 0), time.monotonic_ns())
    else:
        action = _FIXED_ACTION[sig]
    signum = _SIGNALS.get(action)
    if signum is not None and pid > 0:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass  # killed while waiting for the answer: the action was still taken
        except OSError:
            return Action.BLOCK
    return action
