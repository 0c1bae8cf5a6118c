"""The exec signal fallback (docs/cli.md ``--enforce-fallback`` last paragraph) and the enforce
gate, on this host with fanotify switched off through the daemon's ``PYBPFGUARD_FANOTIFY=off`` seam (BPF
LSM is refused here anyway): neither -EPERM mechanism exists, so only ``sched_process_exec`` + SIGKILL can
stop a denied binary, and the posture must say exactly that."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from pybpfguard.agent.paths import kernel_dev
from pybpfguard.agent.posture import Mechanism, Posture, PostureReport
from tests.daemon.conftest import run_in_cgroup

pytestmark = pytest.mark.kernel

EXIT_ENFORCE_REFUSED = 3


@pytest.fixture
def no_fanotify(agent_env: dict[str, str]) -> dict[str, str]:
    """Daemons started by this test behave as if fanotify_init failed."""
    agent_env["PYBPFGUARD_FANOTIFY"] = "off"
    return agent_env


def _binary(tmp_path: Path, name: str) -> Path:
    """A private copy of /bin/true (a real ELF, no interpreter script) the test may deny."""
    path = tmp_path / name
    shutil.copy("/bin/true", path)
    path.chmod(0o755)
    return path


def test_signal_fallback_kills_a_blocked_binary_at_exec_and_reports_kill_with_its_path(
        no_fanotify, start_agent, tmp_path):
    agent = start_agent("--enforce", "--enforce-fallback=signal")
    tool = _binary(tmp_path, "fallback-denied")
    agent.cli("block", "add", str(tool))
    assert subprocess.run([str(tool)], timeout=30).returncode == -signal.SIGKILL
    ev = agent.wait_for(lambda e: e["type"] == "block" and e.get("path") == str(tool))
    st = os.stat(tool)
    assert ev["action"] == "KILL" and ev["comm"] == "fallback-denied"  # the new image's comm
    assert (ev["ino"], ev["dev"]) == (st.st_ino, kernel_dev(st.st_dev))
    assert "blocks_total 1" in agent.cli("stats").stdout
    # the exec itself happened (the kernel had already committed it) and is reported with the same identity
    ex = agent.wait_for(lambda e: e["type"] == "exec" and e.get("path") == str(tool))
    assert ex["exec_id"] == ev["exec_id"]


def test_signal_fallback_posture_is_enforce_signal_naming_exec_signal_and_file_none(no_fanotify, start_agent):
    agent = start_agent("--enforce", "--enforce-fallback=signal")
    change = agent.wait_for(lambda e: e["type"] == "state_change")
    assert change["state"] == "ENFORCE_SIGNAL" and change["detail"] == "exec=signal,file=none"
    report = json.loads(agent.cli("health", "--json").stdout)
    assert report["runtime_state"] == "ENFORCE_SIGNAL"  # (enforce_capable probes the host, which has fanotify)


def test_signal_fallback_lets_other_binaries_run(no_fanotify, start_agent, tmp_path):
    agent = start_agent("--enforce", "--enforce-fallback=signal")
    agent.cli("block", "add", str(_binary(tmp_path, "fallback-denied")))
    other = _binary(tmp_path, "fallback-other")
    assert subprocess.run([str(other)], timeout=30).returncode == 0
    agent.wait_for(lambda e: e["type"] == "exec" and e.get("path") == str(other))
    assert not any(e["type"] == "block" for e in agent.events)


def test_signal_fallback_exempts_processes_in_allow_cgroup(no_fanotify, start_agent, tmp_path, test_cgroup):
    agent = start_agent("--enforce", "--enforce-fallback=signal")
    tool = _binary(tmp_path, "fallback-exempt")
    agent.cli("block", "add", str(tool))
    agent.cli("allow", "add", str(test_cgroup))
    assert run_in_cgroup(test_cgroup, [str(tool)]).returncode == 0
    assert subprocess.run([str(tool)], timeout=30).returncode == -signal.SIGKILL
    ev = agent.wait_for(lambda e: e["type"] == "block" and e.get("path") == str(tool))
    assert ev["cgid"] != os.stat(test_cgroup).st_ino
    assert [e for e in agent.events if e["type"] == "block"] == [ev]  # the exempt exec reported no block


def test_signal_fallback_in_audit_mode_only_reports(no_fanotify, start_agent, tmp_path):
    agent = start_agent("--audit", "--enforce-fallback=signal")
    tool = _binary(tmp_path, "fallback-audit")
    agent.cli("block", "add", str(tool))
    assert subprocess.run([str(tool)], timeout=30).returncode == 0
    ev = agent.wait_for(lambda e: e["type"] == "block" and e.get("path") == str(tool))
    assert ev["action"] == "AUDIT"


def test_enforce_without_any_mechanism_exits_3_under_the_fail_closed_gate(no_fanotify, start_agent):
    agent = start_agent("--enforce")  # --enforce-fallback=off and --enforce-gate-mode=fail-closed: defaults
    assert agent.proc.wait(60) == EXIT_ENFORCE_REFUSED
    assert any("enforcement requested but not available" in line for line in agent.stderr)


def test_enforce_without_any_mechanism_runs_as_audit_fallback_under_the_audit_fallback_gate(
        no_fanotify, start_agent, tmp_path):
    agent = start_agent("--enforce", "--enforce-gate-mode=audit-fallback")
    change = agent.wait_for(lambda e: e["type"] == "state_change")
    assert change["state"] == "AUDIT_FALLBACK" and change["detail"] == "exec=none,file=none"
    assert change["degradation_count"] == 1
    tool = _binary(tmp_path, "fallback-off")
    agent.cli("block", "add", str(tool))
    assert subprocess.run([str(tool)], timeout=30).returncode == 0  # nothing can enforce: nothing is killed
    assert json.loads(agent.cli("health", "--json", check=False).stdout)["runtime_state"] == "AUDIT_FALLBACK"


def test_strict_degrade_exits_3_on_reaching_audit_fallback(no_fanotify, start_agent):
    agent = start_agent("--enforce", "--enforce-gate-mode=audit-fallback", "--strict-degrade")
    assert agent.proc.wait(60) == EXIT_ENFORCE_REFUSED
    assert any("--strict-degrade" in line for line in agent.stderr)


def test_a_signal_class_beside_an_unenforced_one_is_enforce_signal_never_enforce():
    report = PostureReport(True, {"exec": Mechanism.SIGNAL, "file": Mechanism.NONE})
    assert report.state is Posture.ENFORCE_SIGNAL and not report.enforce_capable
    assert report.detail == "exec=signal,file=none"
    assert PostureReport(True, {"exec": Mechanism.NONE, "file": Mechanism.NONE}).state is Posture.AUDIT_FALLBACK
    assert PostureReport(True, {"exec": Mechanism.FANOTIFY, "file": Mechanism.NONE}).state is Posture.AUDIT_FALLBACK
