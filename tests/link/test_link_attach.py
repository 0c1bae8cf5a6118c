"""Attaching programs on the real kernel: each attach kind runs the program, and closing the link stops it."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from link_programs import count_into_slot0, deny_connect4_to_port

from pybpfguard.bpf.link import (
    AttachMethod,
    Link,
    attach_cgroup,
    attach_raw_tracepoint,
    attach_tracepoint,
)
from pybpfguard.bpf.program import Program
from pybpfguard.bpf.types import AttachType, LinkType, ProgType

pytestmark = pytest.mark.kernel
KEY0 = struct.pack("<I", 0)


def _count(counter) -> int:
    return struct.unpack("<Q", counter.lookup_elem(KEY0))[0]


def _getppid_calls(n: int = 20) -> None:
    for _ in range(n):
        os.getppid()


def test_raw_tracepoint_program_runs_on_sys_enter_until_its_link_closes(counter, links):
    spec = count_into_slot0("count_sysenter", ProgType.BPF_PROG_TYPE_RAW_TRACEPOINT)
    with Program.load(spec, fd_array=[counter.fd]) as prog:
        with links.add(attach_raw_tracepoint(prog, "sys_enter")) as link:
            _getppid_calls()
            assert _count(counter) >= 20
            info = link.info()
            assert (info.link_type, info.prog_id, info.tp_name) == (
                LinkType.BPF_LINK_TYPE_RAW_TRACEPOINT,
                prog.info().id,
                "sys_enter",
            )
        stopped_at = _count(counter)
        _getppid_calls()
        # other processes' syscalls no longer count either: the program is detached
        assert _count(counter) == stopped_at


@pytest.mark.parametrize("legacy", [False, True], ids=["bpf_link_perf_event", "perf_event_ioc_set_bpf"])
def test_tracepoint_program_attached_through_perf_event_counts_getppid(counter, links, tracefs, legacy):
    spec = count_into_slot0("count_getppid", ProgType.BPF_PROG_TYPE_TRACEPOINT)
    with Program.load(spec, fd_array=[counter.fd]) as prog:
        link = attach_tracepoint(prog, "syscalls", "sys_enter_getppid", legacy=legacy)
        with link:
            if legacy:
                assert link.method == AttachMethod.PERF_EVENT_IOC_SET_BPF
            else:
                assert links.add(link).info().link_type == LinkType.BPF_LINK_TYPE_PERF_EVENT
            before = _count(counter)
            _getppid_calls(50)
            assert _count(counter) - before >= 50
        stopped_at = _count(counter)
        _getppid_calls(50)
        assert _count(counter) - stopped_at < 50  # only stray getppid() calls of other processes


def _connect_in(cgroup: Path | None, port: int) -> subprocess.CompletedProcess[str]:
    """Connect to loopback *port* from a child process, moved into *cgroup* before it runs Python."""
    code = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=5).close()\n"
        "except PermissionError:\n"
        "    sys.exit(13)\n"
    )

    def enter_cgroup() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    return subprocess.run(
        [sys.executable, "-c", code], preexec_fn=enter_cgroup, timeout=30, capture_output=True, text=True
    )


@pytest.mark.parametrize("legacy", [False, True], ids=["bpf_link", "prog_attach"])
def test_connect4_program_denies_loopback_connect_only_inside_its_cgroup(test_cgroup, links, legacy):
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        port = server.getsockname()[1]
        with Program.load(deny_connect4_to_port(port)) as prog:
            link = attach_cgroup(prog, test_cgroup, legacy=legacy)
            with link:
                if not legacy:
                    info = links.add(link).info()
                    assert info.attach_type == AttachType.BPF_CGROUP_INET4_CONNECT
                    assert info.cgroup_id == os.stat(test_cgroup).st_ino
                else:
                    assert link.method == AttachMethod.BPF_PROG_ATTACH
                denied = _connect_in(test_cgroup, port)
                assert denied.returncode == 13, denied.stderr
                assert _connect_in(None, port).returncode == 0  # outside the cgroup: unaffected
                socket.create_connection(("127.0.0.1", port), timeout=5).close()  # this process too
            assert _connect_in(test_cgroup, port).returncode == 0  # link closed: connect restored


def test_pinned_link_stays_attached_after_close_and_reopens_from_bpffs(counter, bpffs, links):
    spec = count_into_slot0("count_pinned", ProgType.BPF_PROG_TYPE_RAW_TRACEPOINT)
    pin = bpffs / "sys_enter_link"
    with Program.load(spec, fd_array=[counter.fd]) as prog:
        with links.add(attach_raw_tracepoint(prog, "sys_enter")) as link:
            link.pin(pin)
            link_id = link.info().id
        before = _count(counter)
        _getppid_calls()
        assert _count(counter) - before >= 20  # the pin kept it attached
        with Link.from_pinned(pin) as reopened:
            assert (reopened.info().id, reopened.info().prog_id) == (link_id, prog.info().id)
            reopened.unpin()
        assert not pin.exists()
        stopped_at = _count(counter)
        _getppid_calls()
        assert _count(counter) == stopped_at


def test_detach_stops_a_pinned_cgroup_link_at_once(test_cgroup, bpffs, links):
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        Program.load(deny_connect4_to_port(server.getsockname()[1])) as prog,
    ):
        port = server.getsockname()[1]
        link = links.add(attach_cgroup(prog, test_cgroup))
        link.pin(bpffs / "connect_link")
        assert _connect_in(test_cgroup, port).returncode == 13
        link.detach()  # BPF_LINK_DETACH although pinned
        assert _connect_in(test_cgroup, port).returncode == 0
        (bpffs / "connect_link").unlink()
