"""The agent's sensors, in start-up order (docs/architecture.md "Sensors"). A new sensor is a new module
here and one entry in :data:`SENSORS`; the daemon and the other sensors stay as they are."""

from __future__ import annotations

from pybpfguard.agent.sensors.base import RING, RuleGaps, Sensor, SensorContext, SensorPosture, ring_spec
from pybpfguard.agent.sensors.file import FileSensor
from pybpfguard.agent.sensors.process import ProcessSensor
from pybpfguard.bpf.maps import MapSpec

#: Process tracking first: the enforcement programs and fanotify read its process table.
SENSORS: tuple[type[Sensor], ...] = (ProcessSensor, FileSensor)


def private_specs(ringbuf_bytes: int) -> dict[str, MapSpec]:
    """Every map only the daemon's programs use (not pinned), by program-facing name: the events ring of
    *ringbuf_bytes* and each sensor's own maps."""
    specs = {RING: ring_spec(ringbuf_bytes)}
    for sensor in SENSORS:
        specs.update(sensor.map_specs())
    return specs


__all__ = ["RING", "SENSORS", "FileSensor", "ProcessSensor", "RuleGaps", "Sensor", "SensorContext",
           "SensorPosture", "private_specs", "ring_spec"]
