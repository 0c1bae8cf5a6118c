"""Events in the exact shape the agent emits, and policies built from the model, for the simulate and
explain tests. ``block`` events come from the agent's own constructor for fanotify decisions
(:meth:`RecordDecoder.decision`); ``net_*_block`` events from the event Structs (no network sensor yet)."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from msgspec import UNSET

from pybpfguard.agent.events import model as m
from pybpfguard.agent.events.decode import RecordDecoder
from pybpfguard.agent.events.encode import LineEncoder
from pybpfguard.agent.events.model import Action
from pybpfguard.agent.guard_model import BlockDecision, ProcessIdentity
from pybpfguard.agent.paths import inode_key
from pybpfguard.agent.policy.model import Entry, Policy, Section

CGROUP_PATH = "/sys/fs/cgroup/test.slice/app"


class FixedCgroups:
    """The decoder's cgid -> path lookup, fixed: every cgid is CGROUP_PATH (no host cgroup tree needed)."""

    def __init__(self, path: str = CGROUP_PATH) -> None:
        self.path = path

    def get(self, cgid: int) -> tuple[str, Any]:
        return (self.path, UNSET)


def block_event(ino: int, dev: int, cgid: int = 4242, path: bytes = b"/srv/data/secret",
                action: m.Action = m.Action.TERM, cgroup_path: str = CGROUP_PATH) -> msgspec.Struct:
    """A ``block`` event as the fanotify responder reports it."""
    ident = ProcessIdentity(pid=4242, ppid=1, start_time=5_000_000_123, parent_start_time=10, comm=b"cat")
    decision = BlockDecision(pid=4242, ino=ino, dev=dev, path=path, path_complete=True, action=action, cgid=cgid,
                             ts_ns=1, exec=False, identity=ident)
    return RecordDecoder(FixedCgroups(cgroup_path)).decision(decision)  # type: ignore[arg-type]


def _process(cgid: int, cgroup_path: str = CGROUP_PATH) -> dict[str, Any]:
    return dict(pid=4242, ppid=1, start_time=5_000_000_123, exec_id="4242:5000000123", trace_id="4242:5000000123",
                parent_start_time=10, parent_exec_id="1:10", parent_trace_id="1:10", cgid=cgid,
                cgroup_path=cgroup_path, comm="curl")


_NET_CLASSES = {"connect": m.NetConnectBlockEvent, "sendmsg": m.NetSendmsgBlockEvent,
                "recvmsg": m.NetRecvmsgBlockEvent, "bind": m.NetBindBlockEvent, "listen": m.NetListenBlockEvent,
                "accept": m.NetAcceptBlockEvent}
_DIRECTIONS = {"connect": "egress", "sendmsg": "send", "recvmsg": "recv", "bind": "bind", "listen": "listen",
               "accept": "accept"}
_PROTOCOLS = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}


def net_event(hook: str, remote: str | None = None, remote_port: int | None = None, local_port: int | None = None,
              protocol: int = socket.IPPROTO_TCP, cgid: int = 4242, rule_type: str = "ip",
              family: str | None = None, action: m.Action = m.Action.TERM) -> msgspec.Struct:
    """A ``net_<hook>_block`` event with the fields of docs/events.md."""
    if family is None:
        family = "ipv6" if remote is not None and ipaddress.ip_address(remote).version == 6 else "ipv4"
    return _NET_CLASSES[hook](**_process(cgid), family=family, protocol=_PROTOCOLS.get(protocol, str(protocol)),
                              direction=_DIRECTIONS[hook], remote_ip=UNSET if remote is None else remote,
                              remote_port=UNSET if remote_port is None else remote_port,
                              local_port=UNSET if local_port is None else local_port, rule_type=rule_type,
                              action=action)


def lines(*events: msgspec.Struct) -> bytes:
    """The events as the agent's stdout sink writes them: JSON lines."""
    return LineEncoder().lines(list(events))


def policy(version: int = 6, flags: tuple[Section, ...] = (), **sections: list[tuple[str, Any]]) -> Policy:
    """A Policy from ``section_name=[(text, value), ...]``; entries numbered from line 2 in the order given."""
    p = Policy(version=version, version_line=1)
    line = 2
    for name, entries in sections.items():
        section = Section(name)
        p.section_lines[section] = line
        line += 1
        p.sections[section] = []
        for text, value in entries:
            p.sections[section].append(Entry(line, text, value))
            line += 1
    for section in flags:
        p.flags[section] = line
        line += 1
    return p


def stat_key(path: str | os.PathLike[str]) -> tuple[int, int]:
    return inode_key(os.stat(path))


# --- command line -------------------------------------------------------------------------------------------

def cli(*args: str, env: dict[str, str], stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    raw = subprocess.run([sys.executable, "-m", "pybpfguard", *args], input=stdin, capture_output=True, env=env,
                         timeout=60)
    out = subprocess.CompletedProcess(raw.args, raw.returncode, raw.stdout.decode(), raw.stderr.decode())
    assert "Traceback" not in out.stderr, out.stderr
    return out


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, PYBPFGUARD_STATE_DIR=str(tmp_path / "state"),
                PYBPFGUARD_CONFIG_DIR=str(tmp_path / "config"))


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A denied file, a free file, a candidate policy naming the first and a path absent from this host."""
    denied, free = tmp_path / "denied", tmp_path / "free"
    denied.write_text("x")
    free.write_text("y")
    policy = tmp_path / "cand.conf"
    policy.write_text(f"version=6\n[deny_path]\n{denied}\n/nonexistent/pybpfguard/gone\n[allow_cgroup]\ncgid:77\n"
                      "[deny_cidr]\n10.0.0.0/8\n[deny_port]\n443:tcp:egress\n")
    events = tmp_path / "events.jsonl"
    events.write_bytes(lines(
        block_event(*inode_key(os.stat(denied)), path=os.fsencode(denied)),
        block_event(*inode_key(os.stat(denied)), path=os.fsencode(denied), cgid=77, action=Action.AUDIT),
        block_event(*inode_key(os.stat(free)), path=os.fsencode(free)),
        block_event(5, 5, path=b"/nonexistent/pybpfguard/gone"),
        net_event("connect", "10.9.9.9", 80, rule_type="cidr"),
        net_event("connect", "192.0.2.1", 443, rule_type="port"),
        net_event("bind", local_port=8080, rule_type="port"),
    ) + b'not json\n{"type":"exec","pid":1}\n\n[]\n')
    return {"denied": denied, "free": free, "policy": policy, "events": events, "tmp": tmp_path}
