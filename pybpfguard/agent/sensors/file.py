"""File and exec enforcement: BPF LSM (``file_open``, ``bprm_check_security``), else fanotify permission
marks, else with ``--enforce-fallback=signal`` the exec signal fallback (SIGKILL at
``sched_process_exec``, posture ``exec=signal,file=none``), else nothing (docs/architecture.md "Sensors").

Test seam (like ``PYBPFGUARD_LSM_PATH``): ``PYBPFGUARD_FANOTIFY=off`` makes this sensor behave as if
fanotify_init(2) failed with EPERM, so hosts that have fanotify can exercise the paths without it.
"""

from __future__ import annotations

import contextlib
import errno
import time
from typing import TYPE_CHECKING, ClassVar

from pybpfguard.agent import config
from pybpfguard.agent.events.model import DIAG_HOOK_ERROR, DiagEvent
from pybpfguard.agent.options import EnforceFallback, HookState, LsmHook
from pybpfguard.agent.posture import Mechanism
from pybpfguard.agent.programs.deny import SIGNAL_STATE, SIGNAL_STATE_KEY
from pybpfguard.agent.programs.exec_lsm import bprm_check_program
from pybpfguard.agent.programs.file_lsm import file_open_program
from pybpfguard.agent.sensors.base import Emit, RuleGaps, Sensor, SensorContext, SensorPosture
from pybpfguard.agent.sensors.process import PROCS
from pybpfguard.bpf.errors import BPFError, NotSupportedError, SyscallError
from pybpfguard.bpf.link import attach_lsm
from pybpfguard.bpf.maps import MapSpec, MapType
from pybpfguard.bpf.program import Program

if TYPE_CHECKING:  # imported for real only when fanotify is started (start-up time)
    from pybpfguard.agent.guard_adapter import GuardAdapter

#: Escalation window per (pid, start_time) of the LSM hooks and the exec signal fallback.
SIGNAL_STATE_MAP = "enforce_signal_state"


class FileSensor(Sensor):
    name: ClassVar[str] = "file"

    def __init__(self) -> None:
        super().__init__()
        self.guard: GuardAdapter | None = None  # fanotify enforcement, when the kernel offers no BPF LSM
        self._lsm: list[Program] = []
        self._guard_errors = 0
        self._stopped_reported = False

    @classmethod
    def map_specs(cls) -> dict[str, MapSpec]:
        return {SIGNAL_STATE_MAP: MapSpec(MapType.BPF_MAP_TYPE_LRU_HASH, 65536, name="enforce_sigstat",
                                          key_layout=SIGNAL_STATE_KEY, value_layout=SIGNAL_STATE)}

    def load(self, ctx: SensorContext) -> None:
        """Load the LSM programs when this kernel runs BPF LSM (none, with the reason logged, otherwise). The
        first (file_open) is required; a later one the verifier rejects is left out and reported."""
        for prog in (file_open_program(ctx.layout), bprm_check_program(ctx.layout)):
            try:
                self._lsm.append(ctx.load(prog))
            except (NotSupportedError, SyscallError) as err:
                if not self._lsm:
                    ctx.log.info(f"{err}; file and exec enforcement falls back to fanotify")
                    return
                ctx.log.warn("optional LSM program not loaded", program=prog.name, reason=str(err))

    def attach(self, ctx: SensorContext) -> SensorPosture:
        """Attach the LSM programs, else start fanotify, else arm the exec signal fallback when asked to
        (docs/enforcement.md, last paragraph)."""
        attached: set[str] = set()
        for prog in self._lsm:
            try:
                self.links.append(attach_lsm(prog))
                attached.add(prog.name)
            except BPFError as err:
                ctx.log.warn("LSM attach failed", program=prog.name, reason=str(err))
        posture = SensorPosture()
        if "file_open" in attached:
            file_mech = exec_mech = Mechanism.BPF_LSM
        else:
            try:
                self.guard = self._start_fanotify(ctx)
                file_mech = exec_mech = Mechanism.FANOTIFY
            except OSError as err:
                file_mech, exec_mech = Mechanism.NONE, self._without_fanotify(ctx, err, posture)
        posture.classes = {"file": file_mech, "exec": exec_mech}
        if next(iter(ctx.pins.deny_comm.keys()), None) is not None:
            posture.classes["deny_comm"] = (Mechanism.BPF_LSM if "bprm_check" in attached else
                                            Mechanism.FANOTIFY if self.guard is not None else Mechanism.NONE)
        def state(name: str) -> HookState:
            return HookState.ATTACHED if name in attached else HookState.MISSING

        posture.hooks = {"file_open": state("file_open"), "bprm_check_security": state("bprm_check"),
                         "inode_permission": HookState.NOT_REQUESTED if ctx.options.lsm_hook is LsmHook.FILE
                         else HookState.MISSING}
        if ctx.options.lsm_hook is not LsmHook.FILE:
            ctx.log.warn("no inode_permission program is generated yet; file rules are enforced at open only",
                         lsm_hook=ctx.options.lsm_hook)
        posture.started = {"file_enforcement": file_mech.value}
        return posture

    def _start_fanotify(self, ctx: SensorContext) -> GuardAdapter:
        """The fanotify FileGuard; raises OSError (FanotifyError) when fanotify is refused, or when the
        ``PYBPFGUARD_FANOTIFY=off`` test seam says to behave as if it were."""
        from pybpfguard.agent.fanotify import FanotifyError
        from pybpfguard.agent.guard_adapter import GuardAdapter

        if (config.env("FANOTIFY") or "").strip().lower() == "off":
            raise FanotifyError("fanotify_init", errno.EPERM, hint="PYBPFGUARD_FANOTIFY=off test seam")
        return GuardAdapter(ctx.pins, ctx.maps[PROCS], ctx.options, ctx.log, ctx.decoder, ctx.sampled_out)

    @staticmethod
    def _without_fanotify(ctx: SensorContext, err: OSError, posture: SensorPosture) -> Mechanism:
        """Neither BPF LSM nor fanotify: arm the exec signal fallback if asked; returns the exec mechanism.

        File opens stay unenforced (and unobserved). Under requested enforce that shows as ``file=none`` in
        the posture, which the enforce gate judges; under requested audit, as a DEGRADED fault."""
        if not ctx.options.enforce:
            posture.faults.append("file_enforcement_unavailable")
        if ctx.options.enforce_fallback is not EnforceFallback.SIGNAL:
            ctx.log.error("fanotify unavailable: file and exec rules are not enforced", reason=str(err))
            return Mechanism.NONE
        ctx.write_config(signal_fallback_enforce=1)
        ctx.log.warn("fanotify unavailable: denied executables are killed at exec (signal fallback, SIGKILL);"
                     " file opens are not enforced", reason=str(err))
        return Mechanism.SIGNAL

    def resync(self) -> RuleGaps:
        """Re-mark from the live rule set (fanotify only): a global or cgroup-scoped inode rule fanotify
        cannot mark (its path is gone and its inode cannot be reopened by handle or by number) is not enforced.
        Raises RuleSetChanging (pybpfguard.agent.guard_adapter) when the live set kept changing while it was
        read: the rules marked before stay in force and the edit stays unacknowledged."""
        if self.guard is None:
            return RuleGaps()
        unmarked = dict(self.guard.resync())
        faults = [f"exec_rules_unenforced={len(self.guard.exec_gaps)}"] if self.guard.exec_gaps else []
        return RuleGaps(unenforced=unmarked, state_fault=self.guard.state_fault, faults=faults)

    def poll(self, emit: Emit) -> None:
        if self.guard is not None:
            self.guard.drain(emit)

    def check(self, emit: Emit, stopping: bool) -> list[str]:
        """No-Pretend at run time: a stopped responder enforces nothing (DEGRADED until restart), and each
        permission event answered ALLOW because handling it failed is a hook error (diag type 2). Once stop
        was asked for, the daemon itself closes the responder: a clean stop is no fault."""
        if self.guard is None:
            return []
        errors = self.guard.errors
        if errors > self._guard_errors:
            n = errors - self._guard_errors
            self._guard_errors = errors
            emit(DiagEvent(diag_type=DIAG_HOOK_ERROR, timestamp=time.monotonic_ns(), data1=n, data2=errors,
                           msg=f"{n} file decisions failed open"))
            self.guard.log.error("fanotify decisions failed open", count=n, total=errors)
        if self.guard.running or stopping or self._stopped_reported:
            return []
        self._stopped_reported = True
        self.guard.log.error("the fanotify responder stopped: file and exec rules are no longer enforced")
        return ["fanotify_responder_stopped"]

    def stop(self, emit: Emit) -> None:
        self.detach()
        if self.guard is not None:
            self.guard.close()
            self.guard.drain(emit)

    def close(self) -> None:
        if self.guard is not None:
            with contextlib.suppress(OSError, BPFError):
                self.guard.close()
            self.guard = None
        super().close()
