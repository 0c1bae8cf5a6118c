"""The seed's Wazuh decoder and QRadar regexes, applied to our `block` lines, capture pid, path, action."""

from __future__ import annotations

import re

import pytest

from pybpfguard.agent.cgroups import CgroupCache
from pybpfguard.agent.events.decode import RecordDecoder
from pybpfguard.agent.events.encode import LineEncoder
from pybpfguard.agent.events.records import BLOCK, ActionCode
from tests.conftest import shared_dir

SEED = shared_dir() / "seed" / "SIEM_INTEGRATION.txt"
# Verbatim from SIEM_INTEGRATION (Wazuh <regex>, QRadar <pattern regex> and property expressions).
WAZUH = r'"type":"block".*"pid":(\d+).*"path":"([^"]+)".*"action":"(\w+)"'
QRADAR_BLOCK = r'\"type\":\"block\".*\"pid\":(\d+).*\"path\":\"([^\"]+)\".*\"action\":\"([^\"]+)\"'
QRADAR_PROPS = {"pid": r"\"pid\":(\d+)", "path": r"\"path\":\"([^\"]+)\"", "action": r"\"action\":\"([^\"]+)\"",
                "cgroup_path": r"\"cgroup_path\":\"([^\"]+)\""}

PATHS = [b"/etc/shadow", b"/tmp/with space/f.txt", "/tmp/żółw/日本".encode(), b"/tmp/caf\xe9",
         b"/" + b"d/" * 1500 + b"f"]


@pytest.fixture(scope="module")
def seed_text() -> str:
    if not SEED.exists():
        pytest.skip(f"{SEED} not present")
    return SEED.read_text()


def test_regexes_here_are_the_seeds_verbatim(seed_text: str) -> None:
    for rx in (WAZUH, QRADAR_BLOCK, *QRADAR_PROPS.values()):
        assert rx in seed_text


def _block_line(path: bytes, action: ActionCode, cgid: int = 1) -> tuple[bytes, dict]:
    rec = BLOCK.pack(pid=31337, ppid=4000, start_time=42, parent_start_time=7, cgid=cgid, comm=b"cat", ino=5,
                     dev=2, action=action, path=path)
    event = RecordDecoder(CgroupCache()).decode(memoryview(rec))
    out = bytearray()
    LineEncoder().append(event, out)
    return bytes(out), {"pid": "31337", "path": event.path, "action": action.name, "cgroup_path": event.cgroup_path}


@pytest.mark.parametrize("action", list(ActionCode))
@pytest.mark.parametrize("path", PATHS)
def test_wazuh_and_qradar_capture_pid_path_action_and_cgroup_from_block_lines(path, action, event_validator) -> None:
    raw, want = _block_line(path, action)
    event_validator(raw)
    line = raw.decode().rstrip("\n")
    for rx in (WAZUH, QRADAR_BLOCK):
        m = re.search(rx, line)
        assert m is not None and m.groups() == (want["pid"], want["path"], want["action"])
    for name, rx in QRADAR_PROPS.items():
        m = re.search(rx, line)
        assert m is not None and m.group(1) == want[name], name


def test_ppid_and_path_b64_sibling_never_shadow_pid_or_path() -> None:
    raw, _ = _block_line(b"/tmp/caf\xe9", ActionCode.AUDIT)
    line = raw.decode()
    assert '"path_b64":' in line and '"ppid":4000' in line
    m = re.search(WAZUH, line)
    assert m is not None and m.group(1) == "31337" and m.group(2) == "/tmp/caf\ufffd"
