"""The shape every sensor has (docs/architecture.md "Sensors"), and what the daemon lends it.

A sensor owns its private map specs, its program generators (called through their public functions in
:mod:`pybpfguard.agent.programs`), its attach step, its fallback chain and the posture classes and hooks
it reports. The daemon opens the pins, creates the events ring and every sensor's maps, then runs each
sensor's :meth:`Sensor.load` (while the agent moves into its own cgroup), :meth:`Sensor.attach`, every
loop turn :meth:`Sensor.poll` and :meth:`Sensor.check`, and on the way out :meth:`Sensor.stop` and
:meth:`Sensor.close`. Sensors are independent: one never calls another.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import msgspec

from pybpfguard.agent.events.decode import RecordDecoder
from pybpfguard.agent.logs import Logger
from pybpfguard.agent.maps import PinnedMaps
from pybpfguard.agent.options import RunOptions
from pybpfguard.agent.paths import InodeKey
from pybpfguard.agent.posture import Mechanism
from pybpfguard.agent.programs.emit import AgentProgram
from pybpfguard.bpf.btf.layout import Layout as KernelLayout
from pybpfguard.bpf.errors import BPFError
from pybpfguard.bpf.link import Link
from pybpfguard.bpf.maps import Map, MapSpec, MapType
from pybpfguard.bpf.program import Program

#: The ring every program writes its records to (``bpf_ringbuf_output``), read by the daemon's loop.
RING = "events"

Emit = Callable[[msgspec.Struct], None]


def ring_spec(ringbuf_bytes: int) -> MapSpec:
    """The events ring of *ringbuf_bytes* (a power of two, a multiple of the page size)."""
    return MapSpec(MapType.BPF_MAP_TYPE_RINGBUF, ringbuf_bytes, name=RING)


@dataclass
class SensorContext:
    """What the daemon lends every sensor for one run.

    ``maps``: every map by its program-facing name (the pins, the ring, each sensor's own), for
    :func:`~pybpfguard.agent.programs.load.load_program`; ``load(prog)``: load a generated program with the
    attach id from this kernel's BTF (the daemon closes it at exit); ``layout``: the kernel layout the
    generators take; ``write_config(**fields)``: rewrite ``agent_config`` with *fields* kept over rewrites;
    ``sampled_out()``: True for an event ``--event-sample-rate`` leaves out."""

    options: RunOptions
    log: Logger
    pins: PinnedMaps
    maps: Mapping[str, Map]
    load: Callable[[AgentProgram], Program]
    layout: KernelLayout
    decoder: RecordDecoder
    sampled_out: Callable[[], bool]
    write_config: Callable[..., None]


@dataclass
class SensorPosture:
    """What a sensor enforces after :meth:`Sensor.attach`: ``classes`` (rule class -> mechanism, counted
    in the posture under requested enforce), ``hooks`` (hook -> ``attached`` | ``missing`` |
    ``not_requested``, runtime.json), ``faults`` (start-up faults, DEGRADED), ``started`` (fields of the
    ``agent started`` log line)."""

    classes: dict[str, Mechanism] = field(default_factory=dict)
    hooks: dict[str, str] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    started: dict[str, str] = field(default_factory=dict)


@dataclass
class RuleGaps:
    """After a resync: denied inodes the sensor cannot enforce (-> why), the state-file fault
    (``state_file_unreadable=...``) or None, and other posture faults of the rules just synced (a rule
    class it cannot enforce right now: ``exec_rules_unenforced=<n filesystems>``)."""

    unenforced: dict[InodeKey, str] = field(default_factory=dict)
    state_fault: str | None = None
    faults: list[str] = field(default_factory=list)


class Sensor:
    """Base of every sensor; each step defaults to nothing. Subclasses set ``name``."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self.links: list[Link] = []

    @classmethod
    def map_specs(cls) -> dict[str, MapSpec]:
        """The maps only this sensor's programs use (not pinned), by program-facing name."""
        return {}

    def load(self, ctx: SensorContext) -> None:
        """Generate and load the programs (no attach yet); raises the loader's errors for a required one."""

    def attach(self, ctx: SensorContext) -> SensorPosture:
        """Attach, walking the fallback chain; returns what is enforced."""
        return SensorPosture()

    def resync(self) -> RuleGaps:
        """The pinned rules changed: bring user-space enforcement up to date."""
        return RuleGaps()

    def poll(self, emit: Emit) -> None:
        """Every loop turn: emit the events the sensor decided in user space."""

    def check(self, emit: Emit, stopping: bool) -> list[str]:
        """Every loss check (twice a second at most): the new run-time faults (each reported once)."""
        return []

    def stop(self, emit: Emit) -> None:
        """Stop deciding (detach, stop answering) and emit what was decided meanwhile."""
        self.detach()

    def detach(self) -> None:
        for link in self.links:
            with contextlib.suppress(OSError, BPFError):
                link.close()
        self.links.clear()

    def close(self) -> None:
        """Release everything this sensor holds; idempotent."""
        self.detach()
