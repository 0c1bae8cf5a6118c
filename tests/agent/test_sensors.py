"""Sensors: each owns its maps; the file sensor's run-time checks keep the daemon's No-Pretend rules."""

from __future__ import annotations

from types import SimpleNamespace

from pybpfguard.agent.events.model import DIAG_HOOK_ERROR
from pybpfguard.agent.maps import pinned_specs
from pybpfguard.agent.sensors import RING, SENSORS, FileSensor, private_specs


class Log:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, msg: str, **kw: object) -> None:
        self.errors.append(msg)


def _file_sensor(running: bool, errors: int) -> tuple[FileSensor, SimpleNamespace]:
    sensor = FileSensor()
    guard = SimpleNamespace(running=running, errors=errors, log=Log())
    sensor.guard = guard  # type: ignore[assignment]
    return sensor, guard


def test_no_two_sensors_and_no_pin_share_a_map_name():
    names = [RING, *pinned_specs()]
    for sensor in SENSORS:
        names += list(sensor.map_specs())
    assert len(names) == len(set(names)) and set(private_specs(4096)) <= set(names)


def test_a_stopped_responder_is_a_fault_once_and_a_clean_stop_none():
    sensor, guard = _file_sensor(running=False, errors=0)
    assert sensor.check(lambda ev: None, stopping=True) == []
    assert sensor.check(lambda ev: None, stopping=False) == ["fanotify_responder_stopped"]
    assert sensor.check(lambda ev: None, stopping=False) == []
    assert len(guard.log.errors) == 1


def test_decisions_that_failed_open_give_one_hook_error_diag_per_increase():
    sensor, guard = _file_sensor(running=True, errors=3)
    emitted: list[object] = []
    sensor.check(emitted.append, stopping=False)
    sensor.check(emitted.append, stopping=False)
    guard.errors = 5
    sensor.check(emitted.append, stopping=False)
    assert [(e.diag_type, e.data1, e.data2) for e in emitted] == [(DIAG_HOOK_ERROR, 3, 3), (DIAG_HOOK_ERROR, 2, 5)]
