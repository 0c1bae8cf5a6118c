"""Policies with a running daemon on the host's tier (fanotify): the two-process flow of the systemd unit
(``policy apply`` before ``run``), restarts, and applies that never let a shared rule lapse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pybpfguard.agent.maps import PinnedMaps
from pybpfguard.agent.paths import inode_key
from pybpfguard.agent.policy.apply import apply_content
from pybpfguard.agent.policy.resolve import RuleSetContent
from pybpfguard.agent.rules import agent_cgids
from pybpfguard.agent.rulesync import Outcome, edit_lock
from pybpfguard.agent.statefiles import DenyDb, DenyDbEntry
from tests.daemon.helpers import denied
from tests.rule_switch import assert_denied_throughout

pytestmark = pytest.mark.kernel

STORED = 4


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybpfguard", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_policy_applied_before_the_daemon_starts_is_enforced_and_survives_restarts(
        start_agent, agent_env, tmp_path: Path, test_cgroup: Path):
    secret, other = tmp_path / "secret", tmp_path / "other"
    secret.write_text("s")
    other.write_text("o")
    policy = tmp_path / "policy.conf"
    policy.write_text(f"version=1\n[deny_path]\n{secret}\n")
    out = _cli(agent_env, "policy", "apply", str(policy), "--reset")
    assert out.returncode == STORED and "no running daemon" in out.stderr, out.stderr
    agent = start_agent("--enforce", "--enforce-signal=none")
    assert denied(test_cgroup, secret) and not denied(test_cgroup, other)
    agent.wait_for(lambda e: e.get("type") == "block" and e.get("path") == str(secret))
    agent.stop()
    agent = start_agent("--enforce", "--enforce-signal=none")  # start-up never resets what was applied
    assert denied(test_cgroup, secret)
    policy.write_text(f"version=1\n[deny_path]\n{other}\n")
    out = agent.cli("policy", "apply", str(policy), "--reset", check=False)
    assert out.returncode == 0, out.stderr  # confirmed by the running daemon
    assert denied(test_cgroup, other) and not denied(test_cgroup, secret)
    assert agent.cli("policy", "rollback", check=False).returncode == 0
    assert denied(test_cgroup, secret) and not denied(test_cgroup, other)


def test_a_rule_both_policies_share_never_lapses_during_100_applies(start_agent, agent_env, tmp_path: Path,
                                                                    test_cgroup: Path, monkeypatch):
    """100 applies through the apply engine (each confirmed by the daemon) while a child opens the shared file
    in a tight loop; tests/daemon/test_policy_switch_host.py does the same through the CLI."""
    for key, value in agent_env.items():
        monkeypatch.setenv(key, value)
    files = {name: tmp_path / name for name in ("shared", "only-x", "only-y")}
    for path in files.values():
        path.write_text(path.name)

    def content(*names: str) -> RuleSetContent:
        keys = {name: inode_key(files[name].stat()) for name in names}
        return RuleSetContent(deny_inode={k: 1 for k in keys.values()},
                              paths=[DenyDbEntry(k[1], k[0], os.fsencode(files[n])) for n, k in keys.items()])

    policies = (content("shared", "only-x"), content("shared", "only-y"))
    agent = start_agent("--enforce", "--enforce-signal=none")
    db = DenyDb(Path(agent_env["PYBPFGUARD_STATE_DIR"]) / "deny.db")
    root = Path(agent_env["PYBPFGUARD_PIN_ROOT"])

    def apply(i: int) -> None:
        with edit_lock(db.path), PinnedMaps.open(root) as pins:
            result = apply_content(pins, policies[(i + 1) % 2], reset=True, agent_cgids=agent_cgids(), db=db,
                                   confirm_timeout_s=10)
        assert result.outcome is Outcome.ENFORCED, result.why
        if i % 10 == 0:  # from the moment apply returns: the new policy's own rule holds, the old one's is gone
            now_y = i % 2 == 0
            assert denied(test_cgroup, files["only-y"]) is now_y
            assert denied(test_cgroup, files["only-x"]) is not now_y

    apply(1)
    assert_denied_throughout(files["shared"], apply, switches=100, cgroup=test_cgroup)
    agent.stop()
