"""The agent daemon with BPF LSM, in the VM tier's guest (Debian 6.1; this host refuses LSM programs).

With BPF LSM usable the daemon loads the generated ``file_open`` program (programs/file_lsm.py) and
attaches it instead of fanotify: the decision, the signal, the ``block_stats`` counter and the ``block``
record with the file's real path (``bpf_d_path``) all happen in the kernel, and the daemon only turns the
record into a JSON line. Each test starts the daemon as a subprocess on its own bpffs pin root and state
dir (tests/daemon/conftest.py), denies only files it created under its tmp_path, and opens them from
itself (``--enforce-signal=none`` sends no signal) or from children.

Rules are added in this process with the functions ``block add|del`` and ``allow add`` run (:func:`deny`):
a CLI process costs about 4 s of Python start-up under TCG (the CLI itself is tested on the host), and an
edit that never notifies the daemon shows that the kernel program reads the pinned maps itself. The real
CLI is used where the claim is about its output (``health``, ``stats``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from pybpfguard.agent import rules
from pybpfguard.agent.maps import PinnedMaps
from pybpfguard.agent.statefiles import DenyDb
from tests.daemon.conftest import AgentProcess, agent_env, run_in_cgroup, start_agent  # noqa: F401
from tests.daemon.helpers import check_lines, ino_dev, path_of_length

pytestmark = pytest.mark.kernel

ENFORCE = ("--enforce", "--enforce-signal=none")


def _pins(agent: AgentProcess) -> PinnedMaps:
    return PinnedMaps.open(Path(agent.env["PYBPFGUARD_PIN_ROOT"]), create=False)


def deny(agent: AgentProcess, path: Path) -> None:
    """``block add <path>`` against *agent*'s pins and deny.db, in this process, without telling the
    daemon: only the kernel program can make it take effect."""
    with _pins(agent) as pins:
        rules.block_add(pins, DenyDb(Path(agent.env["PYBPFGUARD_STATE_DIR"]) / "deny.db"), str(path))


def secret_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text("s3cret")
    return path


def expect_eperm(path: Path) -> None:
    """Opening *path* in this process fails with EPERM (PermissionError)."""
    with pytest.raises(PermissionError):
        path.open()


def block_event(agent: AgentProcess, path: Path, **match: object) -> dict[str, object]:
    """The first ``block`` event for *path*'s inode (and *match*), checked to carry its dev and whole path."""
    ino, dev = ino_dev(path)
    ev = agent.wait_for(lambda e: e["type"] == "block" and e["ino"] == ino
                        and all(e.get(k) == v for k, v in match.items()))
    assert ev["dev"] == dev and ev["path"] == str(path) and "path_truncated" not in ev
    return ev


def cat(path: Path) -> tuple[int, int, bytes]:
    """``cat <path>`` as a child: (pid, exit status or -signal, stderr)."""
    child = subprocess.Popen(["cat", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, stderr = child.communicate(timeout=30)
    return child.pid, child.returncode, stderr


def stopped_cleanly(agent: AgentProcess) -> None:
    """Stop the daemon (drain, detach) and check every line it printed against event-schema.json."""
    assert agent.stop() == 0, "".join(agent.stderr)
    check_lines(agent)


def test_enforcing_daemon_reports_file_enforcement_by_bpf_lsm_with_file_open_attached(start_agent):  # noqa: F811
    agent = start_agent(*ENFORCE)
    ev = agent.wait_for(lambda e: e["type"] == "state_change")
    assert (ev["state"], ev["reason_code"], ev["transition_id"]) == ("ENFORCE", "STARTUP", 1)
    assert "file=bpf_lsm" in ev["detail"].split(",") and "fanotify" not in ev["detail"]
    report = json.loads(agent.cli("health", "--json").stdout)
    assert report["ok"] and report["runtime_state"] == "ENFORCE" and report["enforce_capable"]
    assert report["features"]["bpf_lsm"] and report["hooks"]["file_open"] == "attached"
    stopped_cleanly(agent)


def test_enforce_denies_a_blocked_file_and_binary_with_eperm_and_kernel_block_events(start_agent, tmp_path):  # noqa: F811
    agent = start_agent(*ENFORCE)
    secret = secret_file(tmp_path, "shadow-like")
    deny(agent, secret)
    (tmp_path / "alias").symlink_to(tmp_path)
    for opened in (secret, tmp_path / "alias" / "shadow-like"):  # bpf_d_path names the file, not the alias
        pid, returncode, stderr = cat(opened)
        assert returncode == 1 and b"Operation not permitted" in stderr
        ev = block_event(agent, secret, pid=pid)
        assert (ev["action"], ev["comm"], ev["ppid"]) == ("BLOCK", "cat", os.getpid())
        assert "resolved_path" not in ev
    assert secret_file(tmp_path, "other").read_text() == "s3cret"  # another file opens fine

    tool = tmp_path / "denied-true"
    shutil.copy("/bin/true", tool)
    deny(agent, tool)
    with pytest.raises(PermissionError):
        subprocess.run([str(tool)], timeout=30)
    assert block_event(agent, tool)["action"] == "BLOCK"  # file_open runs in execve's open of the binary
    stopped_cleanly(agent)


def test_enforce_signal_term_kills_the_opener_and_the_event_says_term(start_agent, tmp_path):  # noqa: F811
    agent = start_agent("--enforce", "--enforce-signal=term")
    secret = secret_file(tmp_path, "term-on-open")
    deny(agent, secret)
    pid, returncode, _ = cat(secret)
    assert returncode == -signal.SIGTERM
    assert block_event(agent, secret, pid=pid)["action"] == "TERM"
    stopped_cleanly(agent)


def test_audit_allows_the_open_and_the_event_says_audit(start_agent, tmp_path):  # noqa: F811
    agent = start_agent()  # audit is the default
    secret = secret_file(tmp_path, "watched")
    deny(agent, secret)
    assert secret.read_text() == "s3cret"
    assert block_event(agent, secret)["action"] == "AUDIT"
    assert not any(e["type"] == "state_change" for e in agent.events)  # requested audit has no posture
    stopped_cleanly(agent)


def test_allow_cgroup_exempts_a_child_in_its_cgroup_and_no_one_else(start_agent, tmp_path, test_cgroup):  # noqa: F811
    agent = start_agent(*ENFORCE)
    secret = secret_file(tmp_path, "exempt-me")
    deny(agent, secret)
    with _pins(agent) as pins:
        rules.allow_add(pins, str(test_cgroup))
    exempt = run_in_cgroup(test_cgroup, ["cat", str(secret)])
    assert (exempt.returncode, exempt.stdout) == (0, b"s3cret")
    expect_eperm(secret)
    ev = block_event(agent, secret)
    assert ev["pid"] == os.getpid() and ev["cgid"] != os.stat(test_cgroup).st_ino
    assert [e for e in agent.events if e["type"] == "block"] == [ev], "the exempt open gave no event"
    stopped_cleanly(agent)


def test_rules_edited_while_running_apply_at_once_and_stats_counts_the_kernel_blocks(start_agent, tmp_path):  # noqa: F811
    agent = start_agent(*ENFORCE)
    first, second = secret_file(tmp_path, "first"), secret_file(tmp_path, "second")
    assert first.read_text() == second.read_text() == "s3cret"
    deny(agent, first)
    expect_eperm(first)  # at once: no daemon round trip between the map write and the open
    assert second.read_text() == "s3cret"
    deny(agent, second)
    expect_eperm(second)
    with _pins(agent) as pins:
        rules.block_del(pins, DenyDb(Path(agent.env["PYBPFGUARD_STATE_DIR"]) / "deny.db"), str(first))
    assert first.read_text() == "s3cret"
    block_event(agent, first)
    block_event(agent, second)
    assert agent.cli("stats").stdout.split("\n")[:2] == ["blocks_total 2", "ringbuf_drops_total 0"]
    stopped_cleanly(agent)


def test_paths_of_300_and_4000_bytes_are_denied_and_the_event_carries_the_whole_path(start_agent, tmp_path):  # noqa: F811
    agent = start_agent(*ENFORCE)
    for total in (300, 4000):
        target = path_of_length(tmp_path / f"long{total}", total)
        target.parent.mkdir(parents=True)
        target.write_text("x")
        deny(agent, target)
        expect_eperm(target)
        assert len(block_event(agent, target)["path"]) == total
    stopped_cleanly(agent)


def test_a_fifo_and_a_device_node_are_denied_by_bpf_lsm(start_agent, tmp_path):  # noqa: F811
    """fanotify cannot gate them on every kernel (pybpfguard/agent/filetypes.py); file_open sees every open."""
    agent = start_agent(*ENFORCE)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    node = tmp_path / "nulldev"
    os.mknod(node, 0o600 | 0o020000, os.stat("/dev/null").st_rdev)
    for path in (fifo, node):
        deny(agent, path)
        with pytest.raises(PermissionError) as exc:
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        assert exc.value.errno == errno.EPERM  # not EACCES from a nodev mount
    stopped_cleanly(agent)
