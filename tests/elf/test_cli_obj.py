"""``obj show`` and ``obj load``: what bpftool prints for libbpf users, from the shell."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.kernel


def _obj(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybpfguard", "obj", *args], capture_output=True, text=True,
                          timeout=60, **kw)  # type: ignore[call-overload]


def test_show_lists_programs_and_maps(compile_c):
    out = _obj("show", str(compile_c("calls")))
    assert out.returncode == 0, out.stderr
    assert "looper: section socket, type BPF_PROG_TYPE_SOCKET_FILTER, attach -, 37 insns" in out.stdout
    assert "xdp_twice: section xdp, type BPF_PROG_TYPE_XDP, attach BPF_XDP" in out.stdout
    out = _obj("show", str(compile_c("exec")))
    assert "target sched_process_exec" in out.stdout
    assert "execs: type BPF_MAP_TYPE_HASH, key 4 B, value 4 B, max_entries 4096, pinning none" in out.stdout


def test_load_pins_programs_and_maps_with_constants_set(compile_c, bpffs):
    pins = bpffs / "globals"
    out = _obj("load", str(compile_c("globals")), "--pin", str(pins), "--set", "scale=0x2", "--set", "offset=7")
    assert out.returncode == 0, out.stderr
    assert "loaded sum (id " in out.stdout
    assert (pins / "sum").exists() and (pins / "maps" / "globals_rodata").exists()
    from pybpfguard.bpf.maps import Map

    with Map.from_pinned(pins / "maps" / "globals_rodata") as rodata:
        assert rodata.lookup_elem(0)[:4] == (2).to_bytes(4, "little")


@pytest.mark.parametrize("args", [["--set", "scale=lots"], ["--set", "nosuch=1"], ["--set", "scale"]])
def test_bad_constants_are_one_line_errors(compile_c, args):
    out = _obj("load", str(compile_c("globals")), *args)
    assert out.returncode == 1 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_load_attach_holds_a_cgroup_program_until_interrupted(compile_c, test_cgroup):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "pybpfguard", "obj", "load", str(compile_c("connect4")),
                                 "--attach", "--cgroup", str(test_cgroup), "--set", f"denied_port={port}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                # SIGINT at its default, also when this run inherited it ignored
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            assert proc.stdout is not None
            line = ""
            deadline = time.monotonic() + 30
            while "attached" not in line and time.monotonic() < deadline:
                line = proc.stdout.readline()
            assert "attached deny_port" in line

            def connect() -> int:
                code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5).close()\n"
                return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30,
                                      preexec_fn=lambda: (test_cgroup / "cgroup.procs").write_text(
                                          str(os.getpid()))).returncode

            assert connect() != 0
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 128 + signal.SIGINT and "Traceback" not in err, err
            assert connect() == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
