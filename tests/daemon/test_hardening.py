"""Issue 'rules that hold': every accepted rule is enforced, or the user is told; a clean stop is no fault."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pybpfguard.agent.paths import inode_key
from tests.daemon.helpers import denied

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("strict", [False, True])
def test_a_clean_stop_reports_no_fault_and_exits_0(start_agent, signum, strict):
    agent = start_agent("--enforce", "--enforce-signal=none", *(["--strict-degrade"] if strict else []))
    agent.proc.send_signal(signum)
    assert agent.proc.wait(20) == 0, "".join(agent.stderr)
    agent.stop()
    states = [e for e in agent.events if e.get("type") == "state_change"]
    assert [e["state"] for e in states] == ["ENFORCE"], states
    assert not [line for line in agent.stderr if "ERROR" in line or '"level":"error"' in line], agent.stderr




def _spawn_cli(env, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pybpfguard", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _deny_db_paths(env) -> set[str]:
    db = Path(env["PYBPFGUARD_STATE_DIR"]) / "deny.db"
    return {line.split(" ", 2)[2] for line in db.read_text().splitlines() if line}


def _wait_until_applied(bpffs, timeout_s: float = 10.0) -> None:
    """Until the running daemon has acknowledged every edit made so far (pybpfguard.agent.rulesync)."""
    from pybpfguard.agent import rulesync
    from pybpfguard.agent.maps import PinnedMaps

    deadline = time.monotonic() + timeout_s
    with PinnedMaps.open(bpffs / "pybpfguard", create=False) as pins:
        sync = pins.rule_sync
        while sync.lookup_elem(rulesync.APPLIED) < sync.lookup_elem(rulesync.GENERATION):
            assert time.monotonic() < deadline, "the daemon did not catch up with the edits"
            time.sleep(0.05)


def test_parallel_rule_edits_lose_nothing_and_every_record_agrees_with_what_isdenied(
        start_agent, agent_env, bpffs, tmp_path, test_cgroup):
    from pybpfguard.agent.maps import PinnedMaps

    agent = start_agent("--enforce", "--enforce-signal=none")
    first = [tmp_path / f"f{i}" for i in range(20)]
    second = [tmp_path / f"g{i}" for i in range(10)]
    for f in first + second:
        f.write_text("x")
    # Each edit succeeds: confirmed (0), or on a host too busy to confirm within 2 s, stored (4).
    procs = [_spawn_cli(agent_env, "block", "add", str(f)) for f in first]
    assert {p.wait(60) for p in procs} <= {0, 4}, [p.stderr.read() for p in procs if p.returncode not in (0, 4)]
    procs = ([_spawn_cli(agent_env, "block", "del", str(f)) for f in first[:10]]
             + [_spawn_cli(agent_env, "block", "add", str(f)) for f in second])
    assert {p.wait(60) for p in procs} <= {0, 4}, [p.stderr.read() for p in procs if p.returncode not in (0, 4)]
    _wait_until_applied(bpffs)
    kept, gone = first[10:] + second, first[:10]
    expected = {str(f) for f in kept}
    assert _deny_db_paths(agent_env) == expected
    listed = agent.cli("block", "list").stdout.splitlines()
    assert {line.rsplit(" (", 1)[0] for line in listed} == expected
    with PinnedMaps.open(bpffs / "pybpfguard", create=False) as pins:
        pinned = {(k.ino, k.dev) for k in pins.deny_inode}
    assert pinned == {inode_key(os.stat(f)) for f in kept}
    assert all(denied(test_cgroup, f) for f in kept)
    assert not any(denied(test_cgroup, f) for f in gone)


def test_a_malformed_deny_db_never_stops_enforcement_and_edits_that_need_it_fail_with_file_and_line(
        start_agent, agent_env, tmp_path, test_cgroup):
    agent = start_agent("--enforce", "--enforce-signal=none")
    secret = tmp_path / "secret"
    secret.write_text("x")
    agent.cli("block", "add", str(secret))
    db = Path(agent_env["PYBPFGUARD_STATE_DIR"]) / "deny.db"
    with open(db, "a") as f:
        f.write("not a rule\n")
    # an edit that does not read deny.db: the daemon re-syncs, keeps running, keeps enforcing, says why
    assert agent.cli("allow", "add", "cgid:987654").returncode == 0
    ev = agent.wait_for(lambda e: e["type"] == "state_change" and e["state"] == "DEGRADED")
    assert "state_file_unreadable=deny.db:2" in ev["detail"], ev
    assert agent.proc.poll() is None and denied(test_cgroup, secret)
    other = tmp_path / "other"
    other.write_text("x")
    out = agent.cli("block", "add", str(other), check=False)
    assert out.returncode == 1 and f"{db}:2: expected" in out.stderr and "Traceback" not in out.stderr
    assert not denied(test_cgroup, other)  # nothing half-applied
    db.write_text(db.read_text().replace("not a rule\n", ""))
    assert agent.cli("allow", "del", "cgid:987654").returncode == 0
    assert agent.wait_for(lambda e: e["type"] == "state_change" and e["state"] == "ENFORCE"
                          and e["transition_id"] > ev["transition_id"])


def test_a_malformed_deny_db_at_start_is_reported_not_a_traceback(agent_env, start_agent):
    state = Path(agent_env["PYBPFGUARD_STATE_DIR"])
    state.mkdir(mode=0o700)
    (state / "deny.db").write_text("1 2\n")
    agent = start_agent("--enforce", "--enforce-signal=none")
    ev = agent.wait_for(lambda e: e["type"] == "state_change")
    assert ev["state"] == "DEGRADED" and "state_file_unreadable=deny.db:1" in ev["detail"], ev
    assert not any("Traceback" in line for line in agent.stderr)
    assert any("deny.db:1:" in line for line in agent.stderr)


def test_a_rule_added_from_another_mount_namespace_is_enforced_and_confirmed(start_agent, agent_env, tmp_path,
                                                                             test_cgroup):
    start_agent("--enforce", "--enforce-signal=none")
    secret = tmp_path / "secret"
    secret.write_text("x")
    # /run is private to the editor: the daemon's socket is out of its reach, the pins are not
    out = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /run && exec "$@"', "sh",
                          sys.executable, "-m", "pybpfguard", "block", "add", str(secret)],
                         env=agent_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert denied(test_cgroup, secret)


def test_without_a_daemon_an_edit_is_stored_exit_4_and_enforced_once_a_daemon_starts(start_agent, agent_env,
                                                                                   tmp_path, test_cgroup):
    secret = tmp_path / "secret"
    secret.write_text("x")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pybpfguard", "block", "add", str(secret)], env=agent_env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 4 and "no running daemon confirmed it" in out.stderr
    assert time.monotonic() - started < 5  # no daemon: nothing to wait for
    start_agent("--enforce", "--enforce-signal=none")
    assert denied(test_cgroup, secret)


def test_a_stopped_daemon_gets_exit_4_then_enforces_the_rule_by_itself_when_it_resumes(
        start_agent, agent_env, tmp_path, test_cgroup):
    agent = start_agent("--enforce", "--enforce-signal=none")
    agent.wait_for(lambda e: e["type"] == "state_change")
    secret = tmp_path / "secret"
    secret.write_text("x")
    os.kill(agent.proc.pid, signal.SIGSTOP)
    try:
        out = agent.cli("block", "add", str(secret), check=False)
    finally:
        os.kill(agent.proc.pid, signal.SIGCONT)
    assert out.returncode == 4, out.stderr
    deadline = time.monotonic() + 2.0  # the daemon checks the edit generation every loop turn
    while not denied(test_cgroup, secret):
        assert time.monotonic() < deadline, "the stored rule was not picked up within 2 s"
        time.sleep(0.05)


@pytest.fixture
def special_files(tmp_path):
    """A FIFO and a character device node (/dev/null's numbers) the test made."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    dev = tmp_path / "nulldev"
    null = os.stat("/dev/null").st_rdev
    os.mknod(dev, 0o600 | stat.S_IFCHR, null)
    return fifo, dev


def test_block_add_refuses_a_fifo_or_device_the_file_enforcement_cannot_gate(start_agent, special_files):
    from pybpfguard.agent.filetypes import fanotify_gates

    agent = start_agent("--enforce", "--enforce-signal=none")
    for path in special_files:
        if fanotify_gates(os.stat(path).st_mode):
            pytest.fail("this kernel raises fanotify permission events for special files: test the other side")
        out = agent.cli("block", "add", str(path), check=False)
        assert out.returncode == 1 and "raises no permission event" in out.stderr, out.stderr
    assert agent.cli("block", "list").stdout == ""


def test_a_fifo_rule_in_the_maps_is_reported_unenforced_never_counted_as_enforced(start_agent, agent_env, bpffs,
                                                                                   special_files, tmp_path):
    from pybpfguard.agent.maps import INODE_KEY, PinnedMaps

    agent = start_agent("--enforce", "--enforce-signal=none")
    fifo = special_files[0]
    ino, dev = inode_key(os.stat(fifo))
    with PinnedMaps.open(bpffs / "pybpfguard", create=False) as pins:  # as a restored deny.db would put it
        pins.deny_inode.update_elem(INODE_KEY.value(ino=ino, dev=dev), 1)
    db = Path(agent_env["PYBPFGUARD_STATE_DIR"]) / "deny.db"
    db.parent.mkdir(mode=0o700, exist_ok=True)
    with open(db, "a") as f:
        f.write(f"{dev} {ino} {fifo}\n")
    assert agent.cli("allow", "add", "cgid:424242").returncode == 0  # any edit: the daemon re-syncs
    ev = agent.wait_for(lambda e: e["type"] == "state_change" and e["state"] == "DEGRADED")
    assert "unenforced_inode_rules=1" in ev["detail"]
    health = json.loads(agent.cli("health", "--json", check=False).stdout)
    assert health["runtime_state"] == "DEGRADED", health


def test_the_start_up_line_says_why_bpf_lsm_is_not_used(start_agent):
    from pybpfguard.bpf import features
    from pybpfguard.bpf.types import ProgType

    lsm = features.prog_type(ProgType.BPF_PROG_TYPE_LSM)
    agent = start_agent()
    said = "".join(agent.stderr)
    assert "a Linux 5.7 feature" not in said
    if not lsm.available and "EPERM" in lsm.reason:  # this sandbox's kernel: trampolines refused
        assert "BPF LSM unusable: the kernel refuses trampoline programs" in said, said


def test_a_daemon_started_on_a_deny_db_with_one_bad_line_enforces_every_good_one(start_agent, agent_env, tmp_path,
                                                                                test_cgroup):
    secret = tmp_path / "secret"
    secret.write_text("x")
    stored = subprocess.run([sys.executable, "-m", "pybpfguard", "block", "add", str(secret)], env=agent_env,
                            capture_output=True, text=True, timeout=60)
    assert stored.returncode == 4, stored.stderr
    db = Path(agent_env["PYBPFGUARD_STATE_DIR"]) / "deny.db"
    db.write_text("a hand edit gone wrong\n" + db.read_text())
    agent = start_agent("--enforce", "--enforce-signal=none")
    ev = agent.wait_for(lambda e: e["type"] == "state_change")
    assert ev["state"] == "DEGRADED" and "state_file_unreadable=deny.db:1" in ev["detail"], ev
    assert "unenforced_inode_rules" not in ev["detail"], ev  # the good line still names the file to mark
    assert any(f"{db}:1:" in line for line in agent.stderr)
    assert denied(test_cgroup, secret)


def test_an_edit_a_daemon_confirms_but_does_not_enforce_says_so(start_agent, agent_env, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("x")
    agent = start_agent()  # audit: rules are logged, never denied
    out = agent.cli("block", "add", str(secret))
    assert out.returncode == 0 and "the running daemon audits only" in out.stderr, out.stderr
    agent.stop()
    db = Path(agent_env["PYBPFGUARD_STATE_DIR"]) / "deny.db"
    db.write_text(db.read_text() + "not a rule\n")
    agent = start_agent("--enforce", "--enforce-signal=none")
    agent.wait_for(lambda e: e["type"] == "state_change")
    out = agent.cli("allow", "add", "cgid:987654")
    assert out.returncode == 0 and "the running daemon's posture is DEGRADED" in out.stderr, out.stderr
    assert "state_file_unreadable" in out.stderr


def test_a_rule_the_confirming_daemon_cannot_mark_is_exit_4_with_its_reason_not_0(start_agent):
    """procfs refuses fanotify permission marks: the daemon confirms the edit but cannot enforce this rule."""
    agent = start_agent("--enforce", "--enforce-signal=none")
    child = subprocess.Popen(["sleep", "60"])
    try:
        out = agent.cli("block", "add", f"/proc/{child.pid}/environ", check=False)
        assert out.returncode == 4, out.stderr
        assert "the running daemon cannot enforce it" in out.stderr, out.stderr
        listed = agent.cli("block", "list").stdout
        assert "not enforced" in listed, listed
        agent.cli("block", "del", f"/proc/{child.pid}/environ")
    finally:
        child.kill()
        child.wait()
