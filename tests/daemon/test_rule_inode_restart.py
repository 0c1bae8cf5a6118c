"""A rule is on an inode: after a daemon restart it is found again by its file handle when its recorded path
was renamed away, unlinked or reused (fanotify enforcement, this host); a rule whose file is gone is said
to be unenforced, per rule, never dropped silently."""

from __future__ import annotations

import json
import os

import pytest

from tests.daemon.helpers import denied, ino_dev

pytestmark = pytest.mark.kernel

ENFORCE = ("--enforce", "--enforce-signal=none")




def _restart(start_agent, agent):  # type: ignore[no-untyped-def]
    assert agent.stop() == 0, "".join(agent.stderr)
    return start_agent(*ENFORCE)


@pytest.mark.parametrize("move", ["rename", "hardlink_then_unlink", "rename_and_reuse_the_name"])
def test_a_denied_file_moved_while_the_daemon_was_down_is_denied_at_its_new_name_after_a_restart(
        start_agent, tmp_path, test_cgroup, move):
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = elsewhere / "moved"
    agent = start_agent(*ENFORCE)
    agent.cli("block", "add", str(secret))
    assert denied(test_cgroup, secret)
    assert agent.stop() == 0
    key = ino_dev(secret)
    if move == "hardlink_then_unlink":
        os.link(secret, moved)
        secret.unlink()
    else:
        secret.rename(moved)
    if move == "rename_and_reuse_the_name":
        secret.write_text("a new file at the old name")  # another inode: it must not be marked
    assert ino_dev(moved) == key
    agent = start_agent(*ENFORCE)
    assert agent.wait_for(lambda e: e["type"] == "state_change")["state"] == "ENFORCE"
    assert denied(test_cgroup, moved)
    if move == "rename_and_reuse_the_name":
        assert not denied(test_cgroup, secret)
    # the rule is still removable by its recorded path, and its mark goes with it
    agent.cli("block", "del", str(secret) if move != "rename_and_reuse_the_name" else str(moved))
    assert not denied(test_cgroup, moved)


def test_a_denied_file_deleted_before_a_restart_is_reported_unenforced_per_rule(start_agent, tmp_path, test_cgroup):
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    kept.write_text("x")
    gone.write_text("y")
    agent = start_agent(*ENFORCE)
    agent.cli("block", "add", str(kept))
    agent.cli("block", "add", str(gone))
    ino, dev = ino_dev(gone)
    gone.unlink()
    agent = _restart(start_agent, agent)
    ev = agent.wait_for(lambda e: e["type"] == "state_change")
    assert ev["state"] == "DEGRADED" and "unenforced_inode_rules=1" in ev["detail"]
    assert denied(test_cgroup, kept)
    lines = agent.cli("block", "list").stdout.splitlines()
    assert f"{kept} ({ino_dev(kept)[1]}:{ino_dev(kept)[0]})" in lines  # enforced: no remark
    [line] = [line for line in lines if line.startswith(f"{gone} ({dev}:{ino})")]
    assert "[not enforced:" in line and "deleted" in line
    health = agent.cli("health", "--json", check=False)
    report = json.loads(health.stdout)
    assert health.returncode == 1 and report["unenforced_rules"] == 1
    assert any(f"{dev}:{ino}" in issue for issue in report["issues"])
