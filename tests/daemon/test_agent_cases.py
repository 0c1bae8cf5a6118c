"""Every case of shared/cases/AGENT.md against the running daemon, each in enforce and in audit mode.

This host has no BPF LSM, so file and exec rules are enforced by fanotify permission marks on the denied
inodes (docs/enforcement.md, "Without BPF-LSM"); exec telemetry comes from tp_btf. The daemon runs with
``--enforce-signal=none`` (no case is about signals), so an enforced denial is ``action`` BLOCK and an
audited one AUDIT. Every rule names a file or binary the test created under its tmp_path; every actor is a
child in the test's own cgroup. After each test, every line the daemon printed is checked to be one JSON
object that validates against the shipped event-schema.json.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pybpfguard.agent.sensors.process import PROCS, ProcessSensor
from pybpfguard.bpf.maps import Map
from tests.daemon.conftest import AgentProcess
from tests.daemon.helpers import check_lines, ino_dev, path_of_length

pytestmark = pytest.mark.kernel

MODES = {"enforce": ("--enforce", "--enforce-signal=none"), "audit": ("--audit",)}
ACTION = {"enforce": "BLOCK", "audit": "AUDIT"}
NOBODY = 65534
TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


# ---- fixtures and helpers ------------------------------------------------------------------------------

@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def agent(start_agent: Callable[..., AgentProcess], mode: str) -> Iterator[AgentProcess]:
    """A daemon in *mode*; after the test it is stopped (drained) and everything it printed is validated."""
    daemon = start_agent(*MODES[mode])
    yield daemon
    assert daemon.stop() == 0, "".join(daemon.stderr)
    check_lines(daemon)


def enter(cgroup: Path, uid: int | None = None) -> Callable[[], None]:
    """preexec_fn: move the child into *cgroup* (needs root), then drop to *uid* when given."""

    def preexec() -> None:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

    return preexec


def spawn(cgroup: Path, argv: list[Any], uid: int | None = None, **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, preexec_fn=enter(cgroup, uid), **kw)


@dataclass
class Child:
    pid: int
    returncode: int
    stdout: bytes
    stderr: bytes


def run(cgroup: Path, argv: list[Any], stdin: bytes | None = None) -> Child:
    """Run *argv* to completion as a child in *cgroup*."""
    p = spawn(cgroup, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(stdin, timeout=30)
    return Child(p.pid, p.returncode, out, err)





def block(agent: AgentProcess, path: str | bytes | Path) -> None:
    agent.cli("block", "add", os.fsdecode(path))


def expect_open(agent: AgentProcess, mode: str, cgroup: Path, opened: str | bytes, target: str | bytes | Path
                ) -> dict[str, Any]:
    """``cat <opened>`` from *cgroup*: EPERM in enforce, the content in audit; return the block event,
    checked to name *target*'s inode and the action taken."""
    child = run(cgroup, ["cat", opened])
    if mode == "enforce":
        assert child.returncode == 1 and b"Operation not permitted" in child.stderr, child
    else:
        assert child.returncode == 0, child
    ino, dev = ino_dev(target)
    ev = agent.wait_for(lambda e: e["type"] == "block" and e["pid"] == child.pid and e["ino"] == ino)
    assert (ev["dev"], ev["action"]) == (dev, ACTION[mode])
    assert ev["cgid"] == os.stat(cgroup).st_ino and ev["cgroup_path"] == str(cgroup)
    assert "path_truncated" not in ev
    return ev


def expect_exec(agent: AgentProcess, mode: str, cgroup: Path, argv: list[Any], target: str | bytes | Path
                ) -> dict[str, Any]:
    """Exec *argv* (whose binary is *target*, denied) from *cgroup*: refused with EPERM in enforce, runs
    in audit; return the block event, checked to name *target* with its real path."""
    ino, dev = ino_dev(target)
    if mode == "enforce":
        with pytest.raises(PermissionError):
            spawn(cgroup, argv)
        ev = agent.wait_for(lambda e: e["type"] == "block" and e["ino"] == ino)
    else:
        p = spawn(cgroup, argv)
        assert p.wait(30) == 0
        ev = agent.wait_for(lambda e: e["type"] == "block" and e["pid"] == p.pid and e["ino"] == ino)
    assert (ev["dev"], ev["action"], ev["path"]) == (dev, ACTION[mode], os.fsdecode(os.path.realpath(target)))
    assert ev["cgid"] == os.stat(cgroup).st_ino
    settle(agent, cgroup)
    assert [e for e in agent.events if e["type"] == "block" and e["ino"] == ino] == [ev], "reported once"
    return ev


def settle(agent: AgentProcess, cgroup: Path) -> None:
    """Wait until everything that happened so far is printed: ring records and fanotify decisions are
    emitted in the same loop turn (ring first), so after a second marker exec is printed, every decision
    queued before the first marker was printed too."""
    for _ in range(2):
        marker = run(cgroup, ["true"])
        agent.wait_for(lambda e, pid=marker.pid: e["type"] == "exec_argv" and e["pid"] == pid)


def running_exec_event(agent: AgentProcess, cgroup: Path, argv: list[Any]) -> dict[str, Any]:
    """Start *argv* (a long sleep), take its exec event while it still runs, then end it."""
    p = spawn(cgroup, argv)
    try:
        return agent.wait_for(lambda e: e["type"] == "exec" and e["pid"] == p.pid)
    finally:
        p.kill()
        p.wait()


def copy_tool(src: str, dst: Path | bytes) -> Path | bytes:
    """A private copy of a system binary (rules only ever name our own copies)."""
    shutil.copy(src, dst)
    return dst


def proc_start_ns(pid: int) -> int:
    """Start time of *pid* from /proc/<pid>/stat (field 22), clock ticks -> ns: within a tick of the kernel's."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return int(data[data.rfind(b")") + 2 :].split()[19]) * TICK_NS


# ---- the cases ----------------------------------------------------------------------------------------

def test_case01_symlinked_dir_and_proc_self_root_open_denied_with_real_path(agent, mode, tmp_path, test_cgroup):
    real = tmp_path / "etc"
    (real / "sub").mkdir(parents=True)
    secret = real / "shadow"
    secret.write_text("root:x")
    (tmp_path / "etc-link").symlink_to(real / "sub")
    block(agent, secret)
    for alias in (f"{tmp_path}/etc-link/../shadow", f"/proc/self/root{secret}"):
        ev = expect_open(agent, mode, test_cgroup, alias, secret)
        assert ev["path"] == os.path.realpath(secret) and "resolved_path" not in ev


def test_case02_symlinked_binary_exec_names_the_real_binary_and_its_deny_stops_the_link(
        agent, mode, tmp_path, test_cgroup):
    (tmp_path / "bin").mkdir()
    (tmp_path / "dir").mkdir()
    tool = copy_tool("/bin/sleep", tmp_path / "bin" / "realtool")
    system_link = tmp_path / "dir" / "innocent-system"
    system_link.symlink_to("/bin/sleep")  # the case as users write it: the exec event names the real binary
    ev = running_exec_event(agent, test_cgroup, [str(system_link), "30"])
    assert ev["path"] == os.path.realpath("/bin/sleep") and ev["comm"] == "innocent-system"
    innocent = tmp_path / "dir" / "innocent"
    innocent.symlink_to(tool)  # a deny only ever names our own copy
    ev = running_exec_event(agent, test_cgroup, [str(innocent), "30"])
    assert ev["comm"] == "innocent"  # the kernel names the task after the user's string
    assert ev["path"] == str(tool) and (ev["ino"], ev["dev"]) == ino_dev(tool)
    block(agent, tool)
    expect_exec(agent, mode, test_cgroup, [str(innocent), "0"], tool)


def test_case03_300_and_4000_byte_paths_denied_like_short_ones_with_the_whole_path(
        agent, mode, tmp_path, test_cgroup):
    for total in (300, 4000):
        target = path_of_length(tmp_path / f"long{total}", total)
        target.parent.mkdir(parents=True)
        target.write_text("x")
        block(agent, target)
        ev = expect_open(agent, mode, test_cgroup, str(target), target)
        assert ev["path"] == str(target)
    tool = copy_tool("/bin/sleep", target.with_name("t"))  # 4000 - len(f...f) + 1 bytes: a long path too
    ev = running_exec_event(agent, test_cgroup, [str(tool), "30"])
    assert ev["path"] == str(tool) and "path_truncated" not in ev


def test_case04_hardlink_bind_mount_and_rename_of_the_denied_file_all_denied(agent, mode, tmp_path, test_cgroup):
    a, b, m = tmp_path / "a", tmp_path / "b", tmp_path / "m"
    for d in (a, b, m):
        d.mkdir()
    secret = a / "secret"
    secret.write_text("x")
    block(agent, secret)
    os.link(secret, b / "hardlink")
    ev = expect_open(agent, mode, test_cgroup, str(b / "hardlink"), secret)
    assert ev["path"] == str(b / "hardlink")  # the name the file was opened by

    # The bind mount lives only in a private mount namespace of the child: nothing to clean up.
    child = run(test_cgroup, ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                              f"mount --bind {a} {m} && exec cat {m}/secret"])
    assert (child.returncode != 0) == (mode == "enforce"), child
    ino, dev = ino_dev(secret)
    ev = agent.wait_for(lambda e: e["type"] == "block" and e["pid"] == child.pid and e["ino"] == ino)
    assert (ev["dev"], ev["action"], ev["path"]) == (dev, ACTION[mode], f"{m}/secret")  # as the opener sees it

    os.rename(secret, a / "renamed")
    ev = expect_open(agent, mode, test_cgroup, str(a / "renamed"), a / "renamed")
    assert ev["path"] == str(a / "renamed")


def test_case05_binary_25_levels_deep_denied_with_its_full_path(agent, mode, tmp_path, test_cgroup):
    deep = tmp_path.joinpath(*(f"level{i:02d}" for i in range(1, 26)))
    deep.mkdir(parents=True)
    tool = copy_tool("/bin/sleep", deep / "deep-tool")
    if mode == "audit":
        ev = running_exec_event(agent, test_cgroup, [str(tool), "30"])
        assert ev["path"] == str(tool)
    block(agent, tool)
    expect_exec(agent, mode, test_cgroup, [str(tool), "0"], tool)


def test_case06_setuid_root_binary_run_by_nobody_gives_exactly_one_exec_event(agent, mode, test_cgroup):
    d = Path(tempfile.mkdtemp(prefix="pybpfguard-suid-", dir="/tmp"))  # tmp_path is root-only (0700)
    try:
        d.chmod(0o755)
        tool = copy_tool("/bin/sleep", d / "suid-sleep")
        tool.chmod(0o4755)
        p = spawn(test_cgroup, [str(tool), "30"], uid=NOBODY)
        try:
            ev = agent.wait_for(lambda e: e["type"] == "exec" and e["pid"] == p.pid)
            uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", Path(f"/proc/{p.pid}/status").read_text(), re.M)
            assert uids is not None and (int(uids[1]), int(uids[2])) == (NOBODY, 0)  # real nobody, effective root
        finally:
            p.kill()
            p.wait()
        assert ev["ppid"] == os.getpid() and ev["comm"] == "suid-sleep" and ev["path"] == str(tool)
        assert ev["cgid"] == os.stat(test_cgroup).st_ino
        settle(agent, test_cgroup)
        assert [e["type"] for e in agent.events if e.get("pid") == p.pid] == ["exec", "exec_argv"]
    finally:
        shutil.rmtree(d)


THREAD_CHURN = r"""
import json, sys, threading, time
target = sys.argv[1]
tids, results = [], []
def short_lived(i):
    tids.append(threading.get_native_id())
    time.sleep(0.01 * i)  # they exit one by one
threads = [threading.Thread(target=short_lived, args=(i,)) for i in range(16)]
for t in threads: t.start()
for t in threads: t.join()
def try_open():
    try:
        open(target).close(); results.append("ok")
    except PermissionError:
        results.append("EPERM")
opener = threading.Thread(target=try_open); opener.start(); opener.join()  # from a thread
try_open()  # and from the leader
print(json.dumps({"tids": tids, "results": results}), flush=True)
sys.stdin.read()  # stay alive while the test reads the process table
"""


def procs_keys(agent: AgentProcess) -> set[int]:
    """The tgids in the daemon's ``procs`` map, found through the daemon's own map fds."""
    spec = ProcessSensor.map_specs()[PROCS]
    for info in Path(f"/proc/{agent.proc.pid}/fdinfo").iterdir():
        m = re.search(r"^map_id:\s+(\d+)", info.read_text(), re.M)
        if m is None:
            continue
        with Map.from_id(int(m[1])) as probe:
            if probe.info().name != "procs":
                continue
        with Map.from_id(int(m[1]), spec) as procs:
            return set(procs.keys())
    raise AssertionError("the daemon holds no procs map")


def test_case07_thread_exits_keep_the_process_identity_and_never_grow_the_process_table(
        agent, mode, tmp_path, test_cgroup):
    target = tmp_path / "guarded"
    target.write_text("x")
    block(agent, target)
    p = spawn(test_cgroup, [sys.executable, "-c", THREAD_CHURN, str(target)], stdin=subprocess.PIPE,
              stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdin is not None
        report = json.loads(p.stdout.readline())
        assert report["results"] == (["EPERM"] * 2 if mode == "enforce" else ["ok"] * 2)
        exec_ev = agent.wait_for(lambda e: e["type"] == "exec" and e["pid"] == p.pid)
        ino = target.stat().st_ino
        # both decisions' events, which may reach the daemon's stdout one loop turn apart
        deadline = time.monotonic() + 5
        while len(blocks := [e for e in agent.events if e["type"] == "block" and e.get("ino") == ino]) < 2:
            assert time.monotonic() < deadline, blocks
            time.sleep(0.05)
        assert len(blocks) == 2 and {e["pid"] for e in blocks} == {p.pid}  # the tgid, also for the thread
        for ev in blocks:
            for name in ("start_time", "exec_id", "ppid", "parent_start_time", "parent_exec_id"):
                assert ev[name] == exec_ev[name], name
        keys = procs_keys(agent)
        assert p.pid in keys
        assert not keys & (set(report["tids"]) - {p.pid}), "threads entered as processes"
    finally:
        p.kill()
        p.wait()


OPENAT_DIRFD = r"""
import os, sys
denied_dir, name, cwd = sys.argv[1:4]
os.chdir(cwd)  # the cwd holds another file of the same name, which is not denied
dfd = os.open(denied_dir, os.O_RDONLY | os.O_DIRECTORY)
try:
    os.close(os.open(name, os.O_RDONLY, dir_fd=dfd)); print("ok")
except PermissionError:
    print("EPERM")
os.close(os.open(name, os.O_RDONLY))
"""

EXECVEAT_EMPTY_PATH = r"""
import ctypes, os, platform, sys
NR_execveat = {"x86_64": 322, "aarch64": 281}[platform.machine()]
AT_EMPTY_PATH = 0x1000
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(sys.argv[1], os.O_PATH)  # O_PATH: no open of the file yet, so no permission event
argv = (ctypes.c_char_p * 3)(b"sleep", b"30", None)
envp = (ctypes.c_char_p * 1)(None)
libc.syscall(NR_execveat, fd, b"", argv, envp, AT_EMPTY_PATH)
print(os.strerror(ctypes.get_errno()), flush=True)
"""


def test_case08_openat_dirfd_and_execveat_empty_path_decide_on_the_file_actually_opened(
        agent, mode, tmp_path, test_cgroup):
    denied_dir, cwd = tmp_path / "denied-dir", tmp_path / "cwd"
    denied_dir.mkdir()
    cwd.mkdir()
    (denied_dir / "name").write_text("secret")
    (cwd / "name").write_text("harmless")
    block(agent, denied_dir / "name")
    child = run(test_cgroup, [sys.executable, "-c", OPENAT_DIRFD, str(denied_dir), "name", str(cwd)])
    assert child.returncode == 0 and child.stdout == (b"EPERM\n" if mode == "enforce" else b"ok\n"), child
    ino, dev = ino_dev(denied_dir / "name")
    ev = agent.wait_for(lambda e: e["type"] == "block" and e["pid"] == child.pid)
    assert (ev["ino"], ev["dev"], ev["path"], ev["action"]) == (ino, dev, str(denied_dir / "name"), ACTION[mode])
    assert len([e for e in agent.events if e["type"] == "block" and e["pid"] == child.pid]) == 1

    tool = copy_tool("/bin/sleep", tmp_path / "fd-exec-tool")
    block(agent, tool)
    p = spawn(test_cgroup, [sys.executable, "-c", EXECVEAT_EMPTY_PATH, str(tool)], stdout=subprocess.PIPE)
    try:
        ino, dev = ino_dev(tool)
        ev = agent.wait_for(lambda e: e["type"] == "block" and e["pid"] == p.pid and e["ino"] == ino)
        assert (ev["dev"], ev["path"], ev["action"]) == (dev, str(tool), ACTION[mode])
        if mode == "enforce":
            assert p.stdout is not None and p.stdout.read() == b"Operation not permitted\n"
        else:
            ex = agent.wait_for(lambda e: e["type"] == "exec" and e["pid"] == p.pid and e["ino"] == ino)
            assert ex["path"] == str(tool)  # not /dev/fd/N, which is what the kernel names the task after
    finally:
        p.kill()
        p.wait()


ODD_NAMES = [b"new\nline", b'double"quote', b"back\\slash", b"tab\there", b"not-utf8-\xff\xfe",
             b"all\n\"\\\t\xc3("]


def _expect_text(ev: dict[str, Any], field: str, raw: bytes) -> None:
    """The non-UTF-8 rule (docs/events.md): text with U+FFFD, and the raw bytes in ``<field>_b64``."""
    assert ev[field] == raw.decode("utf-8", "replace")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        assert base64.b64decode(ev[f"{field}_b64"]) == raw
    else:
        assert f"{field}_b64" not in ev


def test_case09_odd_and_non_utf8_file_names_give_one_valid_json_line_each(agent, mode, tmp_path, test_cgroup):
    odd = os.fsencode(tmp_path / "odd")
    os.mkdir(odd)
    for name in ODD_NAMES:
        path = os.path.join(odd, name)
        with open(path, "wb") as f:
            f.write(b"x")
        block(agent, path)
        ev = expect_open(agent, mode, test_cgroup, path, path)
        _expect_text(ev, "path", path)
    tool = copy_tool("/bin/sleep", os.path.join(odd, b"run\n\t\"\\\xff"))
    ev = running_exec_event(agent, test_cgroup, [tool, "30"])
    _expect_text(ev, "comm", b"run\n\t\"\\\xff")
    _expect_text(ev, "path", tool)
    assert agent.proc.poll() is None  # nothing crashed


def test_case10_long_binary_name_gives_cut_comm_and_full_path_and_no_match_on_the_cut_name(
        agent, mode, tmp_path, test_cgroup):
    long_tool = copy_tool("/bin/sleep", tmp_path / "pybpfguard-long-named-tool")
    cut_tool = copy_tool("/bin/sleep", tmp_path / "pybpfguard-long")  # its name is the long one's comm
    ev = running_exec_event(agent, test_cgroup, [str(long_tool), "30"])
    assert ev["comm"] == "pybpfguard-long" and ev["path"] == str(long_tool)
    block(agent, long_tool)
    expect_exec(agent, mode, test_cgroup, [str(long_tool), "0"], long_tool)
    cut = run(test_cgroup, [str(cut_tool), "0"])
    assert cut.returncode == 0
    settle(agent, test_cgroup)
    assert not [e for e in agent.events if e["type"] == "block" and e["ino"] == cut_tool.stat().st_ino]


PRE_EXISTING = r"""
import subprocess, sys
target = sys.argv[1]
sys.stdin.readline()  # wait until the agent runs and the rule is in
try:
    open(target).close(); print("ok", flush=True)
except PermissionError:
    print("EPERM", flush=True)
subprocess.run(["cat", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""


def test_case11_process_started_before_the_agent_and_its_children_carry_parent_data(
        start_agent, mode, tmp_path, test_cgroup):
    target = tmp_path / "touched-later"
    target.write_text("x")
    pre = spawn(test_cgroup, [sys.executable, "-c", PRE_EXISTING, str(target)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE)
    try:
        pre_start_ns = proc_start_ns(pre.pid)
        agent = start_agent(*MODES[mode])
        block(agent, target)
        out, _ = pre.communicate(b"go\n", timeout=30)
        assert out == (b"EPERM\n" if mode == "enforce" else b"ok\n")
        ino = target.stat().st_ino
        own = agent.wait_for(lambda e: e["type"] == "block" and e["pid"] == pre.pid and e["ino"] == ino)
        assert own["ppid"] == os.getpid() and own["exec_id"] == f"{pre.pid}:{own['start_time']}"
        assert abs(own["start_time"] - pre_start_ns) <= TICK_NS  # the kernel's own, seeded at start-up
        assert own["parent_exec_id"] == f"{os.getpid()}:{own['parent_start_time']}"
        assert abs(own["parent_start_time"] - proc_start_ns(os.getpid())) <= TICK_NS
        child = agent.wait_for(lambda e: e["type"] == "block" and e["ppid"] == pre.pid and e["ino"] == ino)
        assert child["comm"] == "cat" and child["action"] == ACTION[mode]
        assert (child["parent_start_time"], child["parent_exec_id"]) == (own["start_time"], own["exec_id"])
        ex = agent.wait_for(lambda e: e["type"] == "exec" and e["pid"] == child["pid"])
        assert ex["parent_exec_id"] == own["exec_id"]
        assert agent.stop() == 0
        check_lines(agent)
    finally:
        pre.kill()
        pre.wait()


def test_case12_glob_in_a_path_rule_is_rejected_naming_it_never_taken_literally(agent, mode, tmp_path, test_cgroup):
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "*.log").write_text("literal star")  # a file really named '*.log' must not get the rule
    (logs / "app.log").write_text("x")
    out = agent.cli("block", "add", f"{logs}/*.log", check=False)
    assert out.returncode == 1 and f"{logs}/*.log" in out.stderr and "glob" in out.stderr
    assert agent.cli("block", "list").stdout == ""
    for name in ("*.log", "app.log"):
        assert run(test_cgroup, ["cat", str(logs / name)]).returncode == 0
    settle(agent, test_cgroup)
    assert not [e for e in agent.events if e["type"] == "block"]


IO_URING_OPENAT = r"""
import ctypes, mmap, os, struct, sys
# include/uapi/linux/io_uring.h; syscall numbers are the same on every architecture (asm-generic)
NR_io_uring_setup, NR_io_uring_enter = 425, 426
IORING_OFF_SQ_RING, IORING_OFF_CQ_RING, IORING_OFF_SQES = 0, 0x8000000, 0x10000000
IORING_OP_OPENAT, IORING_ENTER_GETEVENTS, AT_FDCWD = 18, 1, -100
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
params = ctypes.create_string_buffer(120)  # struct io_uring_params
ring_fd = libc.syscall(NR_io_uring_setup, 4, params)
if ring_fd < 0:
    print("setup", os.strerror(ctypes.get_errno()), flush=True); sys.exit(2)
sq_entries, cq_entries = struct.unpack_from("<II", params.raw, 0)
sq_off = struct.unpack_from("<IIIIIIIIQ", params.raw, 40)  # struct io_sqring_offsets
cq_off = struct.unpack_from("<IIIIIIIIQ", params.raw, 80)  # struct io_cqring_offsets
sq = mmap.mmap(ring_fd, sq_off[6] + sq_entries * 4, offset=IORING_OFF_SQ_RING)
cq = mmap.mmap(ring_fd, cq_off[5] + cq_entries * 16, offset=IORING_OFF_CQ_RING)
sqes = mmap.mmap(ring_fd, sq_entries * 64, offset=IORING_OFF_SQES)
path = ctypes.create_string_buffer(os.fsencode(sys.argv[1]))
sqe = bytearray(64)  # struct io_uring_sqe: opcode, flags, ioprio, fd, off, addr, len, open_flags, user_data
struct.pack_into("<BBHiQQIIQ", sqe, 0, IORING_OP_OPENAT, 0, 0, AT_FDCWD, 0, ctypes.addressof(path), 0,
                 os.O_RDONLY, 1)
sqes[0:64] = bytes(sqe)
tail, mask = struct.unpack_from("<II", sq, sq_off[1])[0], struct.unpack_from("<I", sq, sq_off[2])[0]
struct.pack_into("<I", sq, sq_off[6] + (tail & mask) * 4, 0)
struct.pack_into("<I", sq, sq_off[1], tail + 1)
if libc.syscall(NR_io_uring_enter, ring_fd, 1, 1, IORING_ENTER_GETEVENTS, None, 0) < 0:
    print("enter", os.strerror(ctypes.get_errno()), flush=True); sys.exit(2)
head, cmask = struct.unpack_from("<I", cq, cq_off[0])[0], struct.unpack_from("<I", cq, cq_off[2])[0]
user_data, res, _ = struct.unpack_from("<QiI", cq, cq_off[5] + (head & cmask) * 16)
print(res if res < 0 else "fd", flush=True)
"""


def test_case13_io_uring_openat_of_a_denied_file_denied_and_reported_for_the_submitter(
        agent, mode, tmp_path, test_cgroup):
    target = tmp_path / "uring-target"
    target.write_text("x")
    block(agent, target)
    child = run(test_cgroup, [sys.executable, "-c", IO_URING_OPENAT, str(target)])
    if child.stdout.startswith(b"setup "):
        # A kernel without io_uring, or with it switched off, leaves no io_uring way around the rule.
        disabled = Path("/proc/sys/kernel/io_uring_disabled")
        assert not disabled.exists() or disabled.read_text().strip() != "0", child
        return
    want = f"{-errno.EPERM}\n" if mode == "enforce" else "fd\n"
    assert child.returncode == 0 and child.stdout.decode() == want, child
    ev = agent.wait_for(lambda e: e["type"] == "block" and e["pid"] == child.pid)
    assert (ev["ino"], ev["dev"]) == ino_dev(target)
    assert (ev["path"], ev["action"], ev["ppid"]) == (str(target), ACTION[mode], os.getpid())


OPEN_LOOP = r"""
import sys
target, n = sys.argv[1], int(sys.argv[2])
denied = 0
for _ in range(n):
    try:
        open(target).close()
    except PermissionError:
        denied += 1
print(denied, flush=True)
"""

EXEC_LOOP = r"""
import subprocess, sys
pids = [subprocess.Popen([sys.argv[1]]).pid for _ in range(int(sys.argv[2]))]
print(" ".join(map(str, pids)), flush=True)
"""


def _drops(agent: AgentProcess) -> int:
    out = agent.cli("stats").stdout
    return int(re.search(r"^ringbuf_drops_total (\d+)$", out, re.M)[1])  # type: ignore[index]


def _exec_records(agent: AgentProcess, pids: set[int]) -> int:
    return sum(1 for e in agent.events if e["type"] in ("exec", "exec_argv") and e["pid"] in pids)


def test_case14_flood_every_denial_happens_losses_are_counted_and_stop_after_the_flood(
        start_agent, mode, tmp_path, test_cgroup):
    opens, execs = 2000, 200
    # 256 KiB: room for about 55 exec records (each reserves its path tail of PATH_MAX + NAME_MAX), far
    # fewer than a stalled reader meets below, while bursts from elsewhere on the host rarely fill it.
    agent = start_agent(*MODES[mode], "--ringbuf-bytes=262144")
    target = tmp_path / "flooded"
    target.write_text("x")
    tool = copy_tool("/bin/true", tmp_path / "flood-true")
    block(agent, target)

    # 1. Opens and execs at once: every open is decided, each exactly once.
    opener = spawn(test_cgroup, [sys.executable, "-c", OPEN_LOOP, str(target), str(opens)], stdout=subprocess.PIPE)
    looper = run(test_cgroup, [sys.executable, "-c", EXEC_LOOP, str(tool), str(execs)])
    out, _ = opener.communicate(timeout=60)
    assert int(out) == (opens if mode == "enforce" else 0)
    ino = target.stat().st_ino
    agent.wait_for(lambda e: e["type"] == "block" and e["pid"] == opener.pid and e["ino"] == ino, 5)
    deadline = time.monotonic() + 10
    while sum(1 for e in agent.events if e["type"] == "block" and e["pid"] == opener.pid) < opens:
        assert time.monotonic() < deadline, "block events lost"
        time.sleep(0.1)
    assert f"blocks_total {opens}\n" in agent.cli("stats").stdout

    # 2. A ring that cannot be read overflows: every lost record of ours is in the drop counter.
    drops_before = _drops(agent)
    agent.proc.send_signal(signal.SIGSTOP)  # only the ring reader stalls: no marked file is opened meanwhile
    try:
        stalled = run(test_cgroup, [sys.executable, "-c", EXEC_LOOP, str(tool), str(execs)])
    finally:
        agent.proc.send_signal(signal.SIGCONT)
    looped, stalled_pids = ({int(p) for p in c.stdout.split()} for c in (looper, stalled))
    assert len(looped) == len(stalled_pids) == execs
    marker = run(test_cgroup, ["true"])
    agent.wait_for(lambda e: e["type"] == "exec_argv" and e["pid"] == marker.pid)
    lost_before = 2 * execs - _exec_records(agent, looped)
    lost_stalled = 2 * execs - _exec_records(agent, stalled_pids)
    drops = _drops(agent)
    assert lost_stalled > 0, "the stalled ring never overflowed: the case proved nothing"
    assert drops_before >= lost_before and drops - drops_before >= lost_stalled
    # and the gap is reported in the event stream itself: one diag record per gap, with its size
    gap = agent.wait_for(lambda e: e["type"] == "diag" and e["data2"] >= drops_before + lost_stalled, 5)
    assert gap["diag_type"] == 1 and gap["data1"] > 0

    # 3. After the flood the loss rate is back to 0 within seconds: a round of paced execs all arrive while
    # the drop counter stands still. (The ring sees every exec on the host: other work may flood it too,
    # so a round with foreign losses is retried until the deadline.)
    deadline = time.monotonic() + 5
    while True:
        before = _drops(agent)
        paced = []
        for _ in range(5):
            paced.append(run(test_cgroup, [str(tool)]).pid)
            time.sleep(0.05)
        settle(agent, test_cgroup)
        if _exec_records(agent, set(paced)) == 2 * len(paced) and _drops(agent) == before:
            break
        assert time.monotonic() < deadline, "events are still lost after the flood"
    assert agent.stop() == 0
    check_lines(agent)
