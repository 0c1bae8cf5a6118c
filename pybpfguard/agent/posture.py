"""The agent's enforcement posture and the No-Pretend rule (docs/enforcement.md).

A posture is computed from what each rule class is *actually* enforced by on this kernel, never from
what was requested. ``ENFORCE`` requires every class the policy uses to fail the operation with -EPERM
in the kernel (BPF LSM, cgroup socket hooks, or fanotify permission answers); a class that relies on
signals gives ``ENFORCE_SIGNAL``; requested enforcement running as audit is ``AUDIT_FALLBACK``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Posture(enum.Enum):
    UNKNOWN = "UNKNOWN"  # audit was requested: no enforcement posture
    ENFORCE = "ENFORCE"
    ENFORCE_SIGNAL = "ENFORCE_SIGNAL"
    AUDIT_FALLBACK = "AUDIT_FALLBACK"
    DEGRADED = "DEGRADED"


class Mechanism(enum.Enum):
    """How one rule class is enforced on this host."""

    BPF_LSM = "bpf_lsm"  # -EPERM from an LSM hook, in the kernel
    FANOTIFY = "fanotify"  # -EPERM from a fanotify permission answer (fails open if the daemon dies)
    CGROUP_BPF = "cgroup_bpf"  # -EPERM from a cgroup socket hook
    SIGNAL = "signal"  # detection plus an asynchronous kill, not -EPERM
    AUDIT = "audit"  # observed only
    NONE = "none"  # not even observed

    @property
    def returns_eperm(self) -> bool:
        return self in (Mechanism.BPF_LSM, Mechanism.FANOTIFY, Mechanism.CGROUP_BPF)


@dataclass
class PostureReport:
    """What is enforced, class by class (``file``, ``exec``, ``deny_comm``, ``network``)."""

    requested_enforce: bool
    classes: dict[str, Mechanism] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)

    @property
    def state(self) -> Posture:
        if self.faults:
            return Posture.DEGRADED
        if not self.requested_enforce:
            return Posture.UNKNOWN
        mechs = list(self.classes.values())
        # A class left without enforcement is a missing hook (AUDIT_FALLBACK), unless the operator chose
        # the signal fallback for what it covers: then the state is ENFORCE_SIGNAL and the detail names
        # the classes it leaves out (``exec=signal,file=none``). Never ENFORCE either way.
        if mechs and all(m in (Mechanism.AUDIT, Mechanism.NONE) for m in mechs):
            return Posture.AUDIT_FALLBACK
        if Mechanism.SIGNAL in mechs:
            return Posture.ENFORCE_SIGNAL
        if any(m in (Mechanism.AUDIT, Mechanism.NONE) for m in mechs):
            return Posture.AUDIT_FALLBACK
        return Posture.ENFORCE

    @property
    def detail(self) -> str:
        """``file=fanotify,exec=fanotify,...`` plus faults: exactly what is enforced and how."""
        text = ",".join(f"{name}={mech.value}" for name, mech in sorted(self.classes.items()))
        if self.faults:
            text += (";" if text else "") + "faults=" + "|".join(self.faults)
        return text

    @property
    def enforce_capable(self) -> bool:
        return bool(self.classes) and all(m.returns_eperm for m in self.classes.values())


class PostureTracker:
    """Counts transitions for ``state_change`` events: ``transition_id`` and ``degradation_count``."""

    def __init__(self) -> None:
        self.state = Posture.UNKNOWN
        self.transition_id = 0
        self.degradation_count = 0

    def move(self, new: Posture) -> bool:
        """Record a transition to *new*; return False when nothing changed."""
        if new == self.state:
            return False
        self.state = new
        self.transition_id += 1
        if new in (Posture.AUDIT_FALLBACK, Posture.DEGRADED):
            self.degradation_count += 1
        return True
