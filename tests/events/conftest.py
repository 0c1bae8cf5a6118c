"""Fixtures for event tests, usable by any test that produces events.

``event_validator``: a callable taking a JSON line (bytes/str), several lines, a decoded dict or an
event Struct; it checks each event against the shipped ``event-schema.json`` and records its type in
``VALIDATED_TYPES``. ``sample_events``: one realistic event of every type of docs/events.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from pybpfguard.agent.events import model as m
from pybpfguard.agent.events.schema import validate

VALIDATED_TYPES: set[str] = set()


def _objects(item: Any) -> list[dict[str, Any]]:
    if isinstance(item, msgspec.Struct):
        return [json.loads(msgspec.json.encode(item))]
    if isinstance(item, (bytes, bytearray, memoryview)):
        item = bytes(item).decode("utf-8")
    if isinstance(item, str):
        return [json.loads(line) for line in item.splitlines() if line]
    if isinstance(item, dict):
        return [item]
    return [obj for x in item for obj in _objects(x)]


@pytest.fixture
def event_validator() -> Callable[[Any], list[dict[str, Any]]]:
    """Validate events (lines, dicts, Structs, or lists of them); return the decoded objects."""

    def check(item: Any) -> list[dict[str, Any]]:
        objs = _objects(item)
        for obj in objs:
            VALIDATED_TYPES.add(validate(obj))
        return objs

    return check


def _process(pid: int = 4242, comm: str = "cat") -> dict[str, Any]:
    return dict(pid=pid, ppid=1, start_time=5_000_000_123, exec_id=f"{pid}:5000000123",
                trace_id=f"{pid}:5000000123", parent_start_time=10, parent_exec_id="1:10",
                parent_trace_id="1:10", cgid=1, cgroup_path="/sys/fs/cgroup/unified", comm=comm)


def make_sample_events() -> list[msgspec.Struct]:
    """One event per type, with the optional fields exercised somewhere."""
    p = _process()
    k8s = dict(k8s_pod="web-0", k8s_namespace="prod", k8s_service_account="default")
    events: list[msgspec.Struct] = [
        m.ExecEvent(**p, path="/usr/bin/cat", ino=7, dev=271581186, ancestors=[1], **k8s),
        m.ExecArgvEvent(pid=4242, start_time=5, exec_id="4242:5", trace_id="4242:5", argc=2, argv=["cat", "\ufffd"],
                        argv_b64=["Y2F0", "/w=="]),
        m.BlockEvent(**p, path="/etc/shadow", resolved_path="/etc/shadow-real", action=m.Action.TERM, ino=9, dev=2,
                     path_truncated=True, suppressed_during_prior_window=3, **k8s),
        m.StateChangeEvent(event_version=1, state="AUDIT_FALLBACK", reason_code="BPF_LSM_UNAVAILABLE",
                           detail="file: fanotify", strict_mode=False, transition_id=1, degradation_count=1),
        m.ControlChangeEvent(event_version=1, control="emergency_disable", action="disable", enabled=True,
                             prev_enabled=False, changed_at_unix=1_700_000_000, uid=0, pid=1, node_name="n1",
                             reason="incident", reason_sha256="0" * 64, policy_hash="ab", storm_active=False,
                             storm_transitions_in_window=1, storm_threshold=5, storm_window_seconds=60),
        m.DiagEvent(diag_type=1, timestamp=12345, data1=1, data2=2, msg="events ring 90% full"),
        m.ForensicBlockEvent(**p, ino=9, dev=2, uid=1000, gid=1000, username="u", groupname="g", exec_ino=3,
                             exec_dev=2, exec_stage=1, verified_exec=False, exec_identity_known=True,
                             action=m.Action.BLOCK),
        m.OverlayCopyUpEvent(pid=4242, cgid=1, cgroup_path="/sys/fs/cgroup/unified", src_ino=5, src_dev=2,
                             deny_flags=1),
    ]
    for i, tag in enumerate(m.NET_TYPES):
        events.append(m.BY_TAG[tag](**p, family="ipv4", protocol="tcp", direction="egress", remote_ip="127.0.0.1",
                                    remote_port=8080 + i, local_port=40000, rule_type="ip_port",
                                    action=m.Action.AUDIT))
    for tag in m.KERNEL_TYPES:
        rule = tag.split("_")[1]
        extra = {"target_pid": 1} if rule == "ptrace" else {}
        events.append(m.BY_TAG[tag](**p, **extra, rule_type=rule, action=m.Action.KILL))
    return events


@pytest.fixture
def sample_events() -> list[msgspec.Struct]:
    return make_sample_events()
