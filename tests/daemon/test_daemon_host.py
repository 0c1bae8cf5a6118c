"""The agent daemon on this host (no BPF LSM: file and exec rules enforced by fanotify)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from pybpfguard.agent.paths import kernel_dev
from tests.daemon.conftest import run_in_cgroup

pytestmark = pytest.mark.kernel


def test_child_exec_gives_an_exec_event_with_its_identity_and_cgroup(start_agent, test_cgroup, tmp_path):
    agent = start_agent()
    sleeper = tmp_path / "sleep-for-agent-test"
    shutil.copy("/bin/sleep", sleeper)
    child = subprocess.Popen([str(sleeper), "0.5"],
                             preexec_fn=lambda: (test_cgroup / "cgroup.procs").write_text(str(os.getpid())))
    child.wait()
    ev = agent.wait_for(lambda e: e["type"] == "exec" and e["pid"] == child.pid)
    assert ev["ppid"] == os.getpid()
    assert ev["comm"] == "sleep-for-agent"  # the kernel cuts comm at 15 bytes
    assert ev["exec_id"] == ev["trace_id"] == f"{child.pid}:{ev['start_time']}"
    assert ev["parent_exec_id"] == f"{os.getpid()}:{ev['parent_start_time']}"
    assert ev["cgid"] == os.stat(test_cgroup).st_ino and ev["cgroup_path"] == str(test_cgroup)
    st = os.stat(sleeper)
    assert (ev["ino"], ev["dev"]) == (st.st_ino, kernel_dev(st.st_dev))
    argv = agent.wait_for(lambda e: e["type"] == "exec_argv" and e["pid"] == child.pid)
    assert argv["argv"] == [str(sleeper), "0.5"] and argv["argc"] == 2 and argv["exec_id"] == ev["exec_id"]


def test_enforce_denies_a_blocked_file_with_eperm_and_a_block_event(start_agent, tmp_path):
    agent = start_agent("--enforce", "--enforce-signal=none")
    secret = tmp_path / "shadow-like"
    secret.write_text("s3cret")
    agent.cli("block", "add", str(secret))
    out = subprocess.run(["cat", str(secret)], capture_output=True, text=True)
    assert out.returncode != 0 and "Operation not permitted" in out.stderr
    ev = agent.wait_for(lambda e: e["type"] == "block" and e.get("path") == str(secret))
    st = os.stat(secret)
    assert ev["comm"] == "cat" and ev["action"] == "BLOCK"
    assert (ev["ino"], ev["dev"]) == (st.st_ino, kernel_dev(st.st_dev))
    assert agent.wait_for(lambda e: e["type"] == "state_change")["state"] == "ENFORCE"
    assert "blocks_total 1" in agent.cli("stats").stdout
    (tmp_path / "other").write_text("fine")
    assert subprocess.run(["cat", str(tmp_path / "other")], capture_output=True).returncode == 0


def test_audit_allows_the_open_and_reports_audit(start_agent, tmp_path):
    agent = start_agent()  # audit is the default
    secret = tmp_path / "watched"
    secret.write_text("visible")
    agent.cli("block", "add", str(secret))
    assert subprocess.run(["cat", str(secret)], capture_output=True, text=True).stdout == "visible"
    ev = agent.wait_for(lambda e: e["type"] == "block" and e.get("path") == str(secret))
    assert ev["action"] == "AUDIT" and ev["comm"] == "cat"
    assert not any(e["type"] == "state_change" for e in agent.events)  # requested audit has no posture


def test_allow_cgroup_exempts_its_processes(start_agent, tmp_path, test_cgroup):
    agent = start_agent("--enforce", "--enforce-signal=none")
    secret = tmp_path / "exempt-me"
    secret.write_text("x")
    agent.cli("block", "add", str(secret))
    agent.cli("allow", "add", str(test_cgroup))
    assert run_in_cgroup(test_cgroup, ["cat", str(secret)]).returncode == 0
    assert subprocess.run(["cat", str(secret)], capture_output=True).returncode != 0


def test_a_blocked_binary_cannot_be_executed(start_agent, tmp_path):
    agent = start_agent("--enforce", "--enforce-signal=none")
    tool = tmp_path / "denied-true"
    shutil.copy("/bin/true", tool)
    agent.cli("block", "add", str(tool))
    with pytest.raises(PermissionError):
        subprocess.run([str(tool)], check=False)
    ev = agent.wait_for(lambda e: e["type"] == "block" and e.get("path") == str(tool))
    assert ev["action"] == "BLOCK"


def test_rules_survive_a_daemon_restart(start_agent, tmp_path):
    secret = tmp_path / "kept"
    secret.write_text("x")
    first = start_agent("--enforce", "--enforce-signal=none")
    first.cli("block", "add", str(secret))
    assert first.stop() == 0
    second = start_agent("--enforce", "--enforce-signal=none")
    assert subprocess.run(["cat", str(secret)], capture_output=True).returncode != 0
    assert str(secret) in second.cli("block", "list").stdout


def test_a_second_daemon_on_the_same_pin_root_refuses_to_start(start_agent, agent_env):
    start_agent()
    out = subprocess.run([sys.executable, "-m", "pybpfguard", "run"], env=agent_env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "another pybpfguard daemon" in out.stderr


def test_sigterm_stops_cleanly_and_keeps_the_cli_pins(start_agent, agent_env, bpffs):
    agent = start_agent()
    assert agent.stop() == 0
    assert (bpffs / "pybpfguard" / "deny_inode").exists()
    assert not os.path.exists(agent_env["PYBPFGUARD_AGENT_CGROUP"])


def test_health_reports_what_the_running_daemon_really_enforces(start_agent):
    import json

    agent = start_agent("--enforce", "--enforce-signal=none")
    report = json.loads(agent.cli("health", "--json").stdout)
    assert report["ok"] and report["runtime_state"] == "ENFORCE" and report["enforce_capable"]
    assert report["hooks"] == {"exec": "attached", "fork": "attached", "exit": "attached", "file_open": "missing",
                               "bprm_check_security": "missing", "inode_permission": "not_requested"}
    assert report["features"]["fanotify_permission"] and not report["features"]["bpf_lsm"]
    assert report["pins_present"] and report["layout_version"] == 1
    agent.stop()
    after = agent.cli("health", "--json", check=False)
    assert after.returncode == 1 and json.loads(after.stdout)["runtime_state"] == "UNKNOWN"


def test_an_inode_rule_fanotify_cannot_mark_degrades_the_posture_until_removed(start_agent, tmp_path, bpffs):
    from pybpfguard.agent.maps import INODE_KEY, PinnedMaps

    agent = start_agent("--enforce", "--enforce-signal=none")
    assert agent.wait_for(lambda e: e["type"] == "state_change")["state"] == "ENFORCE"
    orphan = INODE_KEY.value(ino=987654321, dev=12345)  # a [deny_inode]-style rule with no path on record
    with PinnedMaps.open(bpffs / "pybpfguard", create=False) as pins:
        pins.deny_inode.update_elem(orphan, 1)
    marker = tmp_path / "marker"
    marker.write_text("x")
    agent.cli("block", "add", str(marker))  # any rule edit makes the daemon re-sync
    ev = agent.wait_for(lambda e: e["type"] == "state_change" and e["state"] == "DEGRADED")
    assert ev["reason_code"] == "HOOK_ATTACH_FAILED" and "unenforced_inode_rules=1" in ev["detail"]
    assert ev["transition_id"] == 2 and ev["degradation_count"] == 1
    with PinnedMaps.open(bpffs / "pybpfguard", create=False) as pins:
        pins.deny_inode.delete_elem(orphan)
    agent.cli("block", "del", str(marker))
    back = agent.wait_for(lambda e: e["type"] == "state_change" and e["transition_id"] == 3)
    assert back["state"] == "ENFORCE" and back["reason_code"] == "RECOVERED"


def test_block_clear_keeps_the_running_daemons_own_cgroup_exempt(start_agent, agent_env):
    agent = start_agent()
    agent_cgid = os.stat(agent_env["PYBPFGUARD_AGENT_CGROUP"]).st_ino
    env = {k: v for k, v in agent_env.items() if k != "PYBPFGUARD_AGENT_CGROUP"}  # a CLI that does not know it
    out = subprocess.run([sys.executable, "-m", "pybpfguard", "block", "clear"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"cgid:{agent_cgid}" in agent.cli("allow", "list").stdout


def test_health_follows_the_daemon_of_its_own_pin_root_only(start_agent, agent_env, tmp_path):
    import json

    start_agent("--enforce", "--enforce-signal=none")
    other = dict(agent_env, PYBPFGUARD_PIN_ROOT=str(tmp_path / "not-a-running-root"))
    report = json.loads(subprocess.run([sys.executable, "-m", "pybpfguard", "health", "--json"], env=other,
                                       capture_output=True, text=True, timeout=60).stdout)
    assert report["runtime_state"] == "UNKNOWN"  # no daemon holds that root's lock


def test_journald_requested_without_a_journald_socket_is_said_at_start(start_agent, agent_env, tmp_path):
    agent_env["PYBPFGUARD_JOURNAL_SOCKET_PATH"] = str(tmp_path / "no-journald-here")
    agent = start_agent("--log=journald")
    assert any("no journald socket" in line for line in agent.stderr)


def test_span_logs_cover_run_load_attach_and_event_loop_as_one_trace(start_agent, agent_env):
    import json

    agent_env["AEGIS_OTEL_SPANS"] = "1"
    daemon = start_agent("--log-format=json")  # a global option, accepted after the command too
    assert daemon.stop() == 0
    records = [json.loads(line) for line in daemon.stderr if line.startswith("{")]
    ends = {r["span_name"]: r for r in records if r.get("message") == "otel_span_end"}
    assert {"daemon.run", "daemon.load_bpf", "daemon.attach_programs", "daemon.event_loop"} <= set(ends)
    assert len({r["trace_id"] for r in records if "trace_id" in r}) == 1
    assert ends["daemon.load_bpf"]["parent_span_id"] == ends["daemon.run"]["span_id"]
    assert all(r["status"] == "ok" for r in ends.values())
