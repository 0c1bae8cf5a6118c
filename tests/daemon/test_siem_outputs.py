"""The daemon's real output, consumed as the seed's SIEM configurations consume it.

- The Wazuh decoder regex and the QRadar pattern and property regexes of shared/seed/SIEM_INTEGRATION.txt,
  applied to the ``block`` lines the daemon printed for opens of our own denied files, capture pid, path,
  action and cgroup_path (docs/events.md: the fixed field order is what makes them match).
- ``--log=journald`` and ``--log=both`` deliver the events to a real systemd-journald (a private one, in
  its own mount namespace; the daemon joins that namespace, since the journal socket path is fixed), read
  back with ``journalctl -o json``: MESSAGE is the event JSON, AEGIS_* fields and PRIORITY as docs/events.md says.
Every event seen (stdout lines and journal MESSAGEs) validates against event-schema.json.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from pybpfguard.agent.events.schema import validate
from tests.conftest import shared_dir
from tests.daemon.conftest import AgentProcess
from tests.daemon.test_agent_cases import ACTION, MODES, check_lines, ino_dev, run
from tests.events.test_journald import PrivateJournald, private_journald  # noqa: F401 (fixture)

pytestmark = pytest.mark.kernel

SEED = shared_dir() / "seed" / "SIEM_INTEGRATION.txt"
# Verbatim from SIEM_INTEGRATION.txt: the Wazuh <regex>, the QRadar <pattern regex> and property expressions.
WAZUH_BLOCK = r'"type":"block".*"pid":(\d+).*"path":"([^"]+)".*"action":"(\w+)"'
QRADAR_BLOCK = r'\"type\":\"block\".*\"pid\":(\d+).*\"path\":\"([^\"]+)\".*\"action\":\"([^\"]+)\"'
QRADAR_EXEC = r'\"type\":\"exec\".*\"pid\":(\d+)'
QRADAR_PROPS = {"pid": r"\"pid\":(\d+)", "path": r"\"path\":\"([^\"]+)\"", "action": r"\"action\":\"([^\"]+)\"",
                "cgroup_path": r"\"cgroup_path\":\"([^\"]+)\""}
# Names a regex capture must survive: a space, non-ASCII, a byte that is not UTF-8 (captured as U+FFFD),
# a 1000-byte deep path. A '"' in a name defeats '[^"]+' by design (docs/events.md), so none here.
NAMES = [b"plain", b"with space", "żółw-日本".encode(), b"caf\xe9", b"/".join([b"d" * 99] * 9) + b"/deep"]


def test_the_regexes_here_are_the_seeds_verbatim() -> None:
    assert SEED.exists(), f"{SEED} is the source of these regexes"
    text = SEED.read_text()
    for rx in (WAZUH_BLOCK, QRADAR_BLOCK, QRADAR_EXEC, *QRADAR_PROPS.values()):
        assert rx in text, rx


def _denied_files(agent: AgentProcess, base: Path) -> list[bytes]:
    paths = []
    for name in NAMES:
        path = os.path.join(os.fsencode(base), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"x")
        agent.cli("block", "add", os.fsdecode(path))
        paths.append(path)
    return paths


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def test_wazuh_and_qradar_regexes_capture_pid_path_action_and_cgroup_from_the_daemons_block_lines(
        start_agent, mode, tmp_path, test_cgroup) -> None:
    agent = start_agent(*MODES[mode])
    for path in _denied_files(agent, tmp_path):
        child = run(test_cgroup, ["cat", path])
        ino, _ = ino_dev(path)
        ev = agent.wait_for(lambda e, pid=child.pid, ino=ino: e["type"] == "block" and e["pid"] == pid
                            and e["ino"] == ino)
        (line,) = [raw.decode() for raw in agent.lines if json.loads(raw) == ev]
        want = {"pid": str(child.pid), "path": path.decode("utf-8", "replace"), "action": ACTION[mode],
                "cgroup_path": str(test_cgroup)}
        for rx in (WAZUH_BLOCK, QRADAR_BLOCK):
            m = re.search(rx, line)
            assert m is not None and m.groups() == (want["pid"], want["path"], want["action"]), (rx, line)
        for name, rx in QRADAR_PROPS.items():
            m = re.search(rx, line)
            assert m is not None and m.group(1) == want[name], (name, line)
        exec_line = next(raw.decode() for raw in agent.lines
                         if json.loads(raw)["type"] == "exec" and json.loads(raw)["pid"] == child.pid)
        m = re.search(QRADAR_EXEC, exec_line)
        assert m is not None and m.group(1) == str(child.pid)
    assert agent.stop() == 0
    check_lines(agent)


def start_in_mount_ns(argv: list[str], env: dict[str, str], ns_pid: int) -> AgentProcess:
    """An AgentProcess whose daemon first joins the mount namespace of *ns_pid* (``nsenter --mount``), where
    /run/systemd/journal/socket is the private journald's. The daemon offers no way to name another
    journal socket (reported to the lead); nsenter execs the daemon, so the pid is the daemon's."""
    popen = subprocess.Popen

    def popen_in_ns(args: list[str], *rest: Any, **kw: Any) -> subprocess.Popen[bytes]:
        return popen(["nsenter", f"--mount=/proc/{ns_pid}/ns/mnt", "--", *args], *rest, **kw)

    with mock.patch.object(subprocess, "Popen", popen_in_ns):
        return AgentProcess(argv, env)


def _raw(entry: dict[str, Any], key: str) -> bytes:
    """A journal field's bytes: journalctl -o json gives non-UTF-8 values as a list of byte values."""
    value = entry[key]
    return bytes(value) if isinstance(value, list) else value.encode()


def _journal_text(value: Any) -> str:
    """How docs/events.md writes a non-string field: integers decimal, booleans true/false, arrays compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize("log", ["journald", "both"])
def test_log_option_delivers_exec_and_block_events_to_a_real_journald(
        agent_env, private_journald: PrivateJournald, log, mode, tmp_path, test_cgroup) -> None:  # noqa: F811
    # agent_env comes first: its bpffs is mounted before journald's namespace copies the mount table.
    agent = start_in_mount_ns([*MODES[mode], f"--log={log}"], agent_env, private_journald.proc.pid)
    try:
        target = os.path.join(os.fsencode(tmp_path), b"journal-caf\xe9")
        with open(target, "wb") as f:
            f.write(b"x")
        agent.cli("block", "add", os.fsdecode(target))
        child = run(test_cgroup, ["cat", target])
        assert (child.returncode != 0) == (mode == "enforce")
        assert agent.stop() == 0, "".join(agent.stderr)  # flushes and closes the sinks
    finally:
        agent.stop()
    entries = private_journald.entries(3)
    ours = {e["AEGIS_TYPE"]: e for e in entries if e.get("AEGIS_PID") == str(child.pid)}
    assert {"exec", "exec_argv", "block"} <= set(ours), [e.get("AEGIS_TYPE") for e in entries]
    for entry in entries:
        event = json.loads(entry["MESSAGE"])
        validate(event)
        assert entry["SYSLOG_IDENTIFIER"] == "aegisbpf" and entry["SYSLOG_FACILITY"] == "16"
        assert entry["AEGIS_TYPE"] == event["type"]
    blk = ours["block"]
    event = json.loads(blk["MESSAGE"])
    ino, dev = ino_dev(target)
    assert (event["ino"], event["dev"], event["action"]) == (ino, dev, ACTION[mode])
    assert blk["PRIORITY"] == ("4" if mode == "enforce" else "6")
    assert _raw(blk, "AEGIS_PATH") == target and base64.b64decode(blk["AEGIS_PATH_B64"]) == target
    for name, value in event.items():
        if name not in ("type", "path"):
            assert blk[f"AEGIS_{name.upper()}"] == _journal_text(value), name
    assert blk["AEGIS_CGROUP_PATH"] == str(test_cgroup) and blk["AEGIS_COMM"] == "cat"
    assert ours["exec"]["PRIORITY"] == "6" and json.loads(ours["exec"]["MESSAGE"])["comm"] == "cat"
    if log == "both":
        check_lines(agent)
        printed = {line.decode().rstrip("\n") for line in agent.lines}
        assert {e["MESSAGE"] for e in ours.values()} <= printed  # the same JSON text on both sinks
    else:
        assert agent.lines == []
