"""``health``: prerequisites, a test load, the pins, and what the running daemon really enforces (read
from the posture it publishes, :mod:`pybpfguard.agent.runtime`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from pybpfguard.agent import config
from pybpfguard.agent.cgroups import NoCgroup2Error, cgroup2_mount
from pybpfguard.agent.logs import Tracer
from pybpfguard.agent.maps import PinLayoutMismatch, PinnedMaps, pinned_specs
from pybpfguard.agent.options import HookState
from pybpfguard.agent.posture import Mechanism
from pybpfguard.agent.runtime import HOOKS, read_runtime
from pybpfguard.agent.trust import UntrustedPathError, require_private_dir
from pybpfguard.bpf.errors import BPFError


@dataclass
class HealthReport:
    ok: bool = True
    capability: str = "disabled"
    runtime_state: str = "UNKNOWN"
    enforce_capable: bool = False
    features: dict[str, bool] = field(default_factory=dict)
    hooks: dict[str, str] = field(default_factory=dict)
    pins_present: bool = False
    daemon_running: bool = False
    layout_version: int | None = None
    unenforced_rules: int = 0  # denied inodes the running daemon reports it cannot enforce
    issues: list[str] = field(default_factory=list)
    #: rule class (``file``, ``exec``) -> the mechanism this host offers to enforce it, daemon running or not
    mechanisms: dict[str, Mechanism] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "capability": self.capability, "runtime_state": self.runtime_state,
                "enforce_capable": self.enforce_capable, "features": self.features, "hooks": self.hooks,
                "pins_present": self.pins_present, "daemon_running": self.daemon_running,
                "layout_version": self.layout_version, "unenforced_rules": self.unenforced_rules,
                "issues": self.issues, "mechanisms": {name: m.value for name, m in self.mechanisms.items()}}


def offered_mechanism(*, bpf_lsm: bool, fanotify: bool, telemetry: bool) -> Mechanism:
    """How this host can enforce file and exec rules, as the daemon chooses (docs/architecture.md): BPF LSM,
    else fanotify permission events, else only observe (telemetry loads), else nothing."""
    if not telemetry:
        return Mechanism.NONE
    return Mechanism.BPF_LSM if bpf_lsm else Mechanism.FANOTIFY if fanotify else Mechanism.AUDIT


def _fanotify_available() -> bool:
    from pybpfguard.agent.fanotify import FanotifyGroup, InitFlag

    try:
        with FanotifyGroup(InitFlag.FAN_CLASS_CONTENT | InitFlag.FAN_CLOEXEC, os.O_RDONLY):
            return True
    except OSError:
        return False


def check(tracer: Tracer) -> HealthReport:
    """Probe everything ``health`` reports. Never raises for a missing feature: it becomes an issue."""
    from pybpfguard.bpf import features

    report = HealthReport()
    with tracer.span("health.detect_kernel_features"):
        btf = features.kernel_btf().available
        ringbuf = features.map_type(features.MapType.BPF_MAP_TYPE_RINGBUF).available
        tracing = features.prog_type(features.ProgType.BPF_PROG_TYPE_TRACING).available
        lsm = features.bpf_lsm()
        try:
            cgroup2_mount()
            cgroup_v2 = True
        except NoCgroup2Error:
            cgroup_v2 = False
        fanotify = _fanotify_available()
        report.features = {"bpf_syscall": tracing or ringbuf, "btf": btf, "ringbuf": ringbuf, "tp_btf": tracing,
                           "cgroup_v2": cgroup_v2, "bpf_lsm": lsm.available, "fanotify_permission": fanotify}
    with tracer.span("health.load_bpf"):
        report.features["programs_load"] = _test_load(report)
    telemetry = all(report.features[k] for k in ("btf", "ringbuf", "tp_btf", "cgroup_v2", "programs_load"))
    report.enforce_capable = telemetry and (lsm.available or fanotify)
    report.capability = "full" if report.enforce_capable else "audit_only" if telemetry else "disabled"
    offered = offered_mechanism(bpf_lsm=lsm.available, fanotify=fanotify, telemetry=telemetry)
    report.mechanisms = {"file": offered, "exec": offered}
    for name, present in report.features.items():
        if not present and name not in ("bpf_lsm",):
            report.issues.append(f"{name} unavailable")
    if not lsm.available:
        report.issues.append(f"BPF LSM unusable ({lsm.reason}): file and exec rules are enforced by fanotify"
                             if fanotify else f"BPF LSM unusable ({lsm.reason}) and no fanotify: audit only")
    pins_trusted = _check_pins(report)
    runtime = read_runtime()
    report.daemon_running = runtime is not None
    if runtime is not None:
        report.runtime_state = runtime.state
        report.hooks = runtime.hooks
        report.unenforced_rules = len(runtime.unenforced)
        for ident, reason in sorted(runtime.unenforced.items()):
            report.issues.append(f"denied inode {ident} is not enforced: {reason}")
        if runtime.state in ("AUDIT_FALLBACK", "DEGRADED"):
            report.issues.append(f"daemon posture {runtime.state}: {runtime.detail}")
    else:
        report.hooks = dict.fromkeys(HOOKS, HookState.MISSING)
        report.issues.append("daemon not running: nothing is enforced or observed now (start it with `run`)")
    report.ok = telemetry and pins_trusted and (runtime is not None) and runtime.state not in ("DEGRADED",)
    return report


def _test_load(report: HealthReport) -> bool:
    """Generate and load (never attach) the exec telemetry program."""
    from pybpfguard.agent.programs.load import load_program
    from pybpfguard.agent.programs.process import exec_program
    from pybpfguard.agent.sensors import private_specs
    from pybpfguard.bpf.btf.layout import Layout
    from pybpfguard.bpf.btf.spec import load_vmlinux
    from pybpfguard.bpf.maps import Map, MapType

    maps: dict[str, Map] = {}
    try:
        prog = exec_program(Layout.from_btf(load_vmlinux()))
        specs = {**pinned_specs(), **private_specs(4096)}
        for name in prog.maps:  # small stand-ins for every map the program reads (a ring's size is its bytes)
            spec = specs[name]
            if spec.type is not MapType.BPF_MAP_TYPE_RINGBUF:
                spec = spec.replace(max_entries=min(spec.max_entries, 16))
            maps[name] = Map.create(spec)
        with load_program(prog, maps):
            return True
    except (BPFError, OSError) as err:
        report.issues.append(f"test load failed: {err}")
        return False
    finally:
        for m in maps.values():
            m.close()


def _check_pins(report: HealthReport) -> bool:
    """Fill the pin fields of *report*; False (with an issue naming the path and what is wrong) when the pin
    root or a pin in it is not one the agent would use (:mod:`pybpfguard.agent.trust`, a foreign layout)."""
    root = config.pin_root()
    report.pins_present = all((root / name).exists() for name in pinned_specs())
    try:
        require_private_dir(root, create=False)
        if not report.pins_present:
            return True
        with PinnedMaps.open(root, create=False) as pins:
            report.layout_version = pins.agent_meta.lookup_elem(0).layout_version
    except FileNotFoundError:
        return True  # nothing pinned yet
    except PinLayoutMismatch as err:
        report.issues.append(str(err))
        return False
    except (UntrustedPathError, BPFError, OSError) as err:
        report.issues.append(f"pins unusable: {err}")
        return False
    return True
