"""``health`` with no daemon running: it says so, exits 1 (unhealthy), and still reports what the host can do,
per rule class the mechanism a daemon would enforce it with."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kernel


def _health(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybpfguard", "health", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_health_without_a_daemon_says_not_running_and_names_the_mechanism_a_daemon_then_uses(
        agent_env: dict[str, str], start_agent):
    text = _health(agent_env)
    assert text.returncode == 1 and "Traceback" not in text.stderr
    assert "daemon: not running" in text.stdout.splitlines()
    report = json.loads(_health(agent_env, "--json").stdout)
    assert not report["daemon_running"] and not report["ok"] and report["features"]
    offered = report["mechanisms"]["file"]
    assert f"mechanism file: {offered}" in text.stdout.splitlines()
    # the oracle: what a daemon started on this host really enforces file rules with
    agent = start_agent("--enforce", "--enforce-signal=none")
    started = next(line for line in agent.stderr if "agent started" in line)
    assert f"file_enforcement={offered}" in started
    running = json.loads(agent.cli("health", "--json").stdout)
    assert running["daemon_running"] and running["mechanisms"] == report["mechanisms"]
