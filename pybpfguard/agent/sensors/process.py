"""Process tracking: ``exec``/``fork``/``exit`` keep the ``procs`` table, seeded at start by a task
iterator, and emit the ``exec`` and ``exec_argv`` records. Always attached; it enforces nothing itself
(the exec signal fallback in the exec program is armed by :mod:`.file`)."""

from __future__ import annotations

from typing import ClassVar

from pybpfguard.agent.maps import U32
from pybpfguard.agent.options import EnforceFallback, HookState
from pybpfguard.agent.programs.process import PROC_INFO, exec_program, exit_program, fork_program, procseed_program
from pybpfguard.agent.sensors.base import Sensor, SensorContext, SensorPosture
from pybpfguard.bpf.iter import run_iterator
from pybpfguard.bpf.link import attach_tracing
from pybpfguard.bpf.maps import MapSpec, MapType
from pybpfguard.bpf.program import Program

#: The process table: tgid -> :data:`~pybpfguard.agent.programs.process.PROC_INFO`; the identity of every
#: event and of the fanotify opener.
PROCS = "procs"


class ProcessSensor(Sensor):
    name: ClassVar[str] = "process"

    def __init__(self) -> None:
        super().__init__()
        self._tracking: list[Program] = []

    @classmethod
    def map_specs(cls) -> dict[str, MapSpec]:
        return {PROCS: MapSpec(MapType.BPF_MAP_TYPE_LRU_HASH, 65536, name=PROCS, key_layout=U32,
                               value_layout=PROC_INFO)}

    def load(self, ctx: SensorContext) -> None:
        layout = ctx.layout
        # the fallback block costs the exec program's verification ~13 ms: generated only when armable
        exec_prog = exec_program(layout, signal_fallback=ctx.options.enforce_fallback is EnforceFallback.SIGNAL)
        self._tracking = [ctx.load(prog) for prog in (exec_prog, fork_program(layout), exit_program(layout))]
        with ctx.load(procseed_program(layout)) as seed:
            run_iterator(seed)

    def attach(self, ctx: SensorContext) -> SensorPosture:
        for prog in self._tracking:
            self.links.append(attach_tracing(prog))
        return SensorPosture(hooks=dict.fromkeys(("exec", "fork", "exit"), HookState.ATTACHED))
