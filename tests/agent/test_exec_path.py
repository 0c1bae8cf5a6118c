"""The exec program's ``path`` is the executable the kernel ran, walked from ``bprm->file`` in tp_btf.

Each test execs a binary it created (a copy of ``true``, or static busybox where a chroot needs one)
and compares the exec event's path with the real path user space computes (``os.path.realpath``, or
what ``/proc/<pid>/exe`` shows). The cases: a symlink, 25 levels deep, execveat AT_EMPTY_PATH and a name
longer than 15 bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from msgspec import UNSET

from pybpfguard.agent.cgroups import CgroupCache
from pybpfguard.agent.events.decode import RecordDecoder
from pybpfguard.agent.events.model import ExecEvent
from pybpfguard.agent.programs import dpath
from pybpfguard.agent.programs.load import load_program
from pybpfguard.agent.programs.process import exec_program
from pybpfguard.agent.sensors import RING
from pybpfguard.bpf.link import attach_tracing
from pybpfguard.bpf.ringbuf import RingReader

pytestmark = pytest.mark.kernel

TRUE = shutil.which("true") or "/bin/true"
BUSYBOX = "/bin/busybox"  # busybox-static: runs inside a chroot with nothing else in it
SYS_execveat = 322  # arch/x86/entry/syscalls/syscall_64.tbl
AT_EMPTY_PATH = 0x1000  # include/uapi/linux/fcntl.h

Execs = Callable[[Callable[[], object]], list[ExecEvent]]


@pytest.fixture
def execs(agent_maps, kernel_layout) -> Iterator[Execs]:
    """``execs(action)`` runs *action* with the exec program attached and returns the exec events since."""
    decoder = RecordDecoder(CgroupCache())
    with (load_program(exec_program(kernel_layout), agent_maps) as prog, RingReader(agent_maps[RING]) as ring,
          attach_tracing(prog)):
        def run(action: Callable[[], object]) -> list[ExecEvent]:
            ring.consume(lambda rec: None)  # what other processes exec'd before
            action()
            events: list[ExecEvent] = []
            ring.consume(lambda rec: events.append(decoder.decode(rec)))
            return [ev for ev in events if isinstance(ev, ExecEvent)]
        yield run


def _copy_binary(dst: Path, src: str = TRUE) -> Path:
    shutil.copy(src, dst)
    dst.chmod(0o755)
    return dst


def _by_comm(events: list[ExecEvent], name: str) -> ExecEvent:
    """The one exec event of the binary called *name* (comm is its first 15 bytes)."""
    found = [ev for ev in events if ev.comm == name[:15]]
    assert len(found) == 1, f"{len(found)} exec events with comm {name[:15]!r} among {[e.comm for e in events]}"
    return found[0]


def _run(argv: list[str], **kw: object) -> None:
    subprocess.run(argv, check=True, timeout=30, **kw)  # type: ignore[call-overload]


def test_exec_through_a_symlink_reports_the_real_binary(execs: Execs, tmp_path: Path) -> None:
    real = _copy_binary(tmp_path / "realtool")
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "innocent"
    link.symlink_to(real)
    ev = _by_comm(execs(lambda: _run([str(link)])), "innocent")  # comm comes from the name exec'd
    assert ev.path == os.path.realpath(link) == str(real)
    assert ev.path_truncated is UNSET
    st = real.stat()
    assert (ev.ino, ev.dev) == (st.st_ino, os.major(st.st_dev) << 20 | os.minor(st.st_dev))


def test_relative_exec_from_another_cwd_reports_the_absolute_path(execs: Execs, tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    prog = _copy_binary(tmp_path / "bin" / "relprog")
    ev = _by_comm(execs(lambda: _run(["./relprog"], cwd=tmp_path / "bin")), "relprog")
    assert ev.path == os.path.realpath(prog)


def _execveat_empty_path(path: Path) -> None:
    """A child that execs *path* through ``execveat(fd, "", AT_EMPTY_PATH)``, the syscall itself."""
    code = (
        "import ctypes, os, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"fd = os.open({str(path)!r}, os.O_RDONLY)\n"
        "argv = (ctypes.c_char_p * 2)(b'fdexec', None)\n"
        "envp = (ctypes.c_char_p * 1)(None)\n"
        f"libc.syscall({SYS_execveat}, fd, b'', argv, envp, {AT_EMPTY_PATH})\n"
        "sys.exit(f'execveat: {os.strerror(ctypes.get_errno())}')\n"
    )
    _run([sys.executable, "-c", code])


def test_execveat_of_an_fd_with_empty_path_reports_the_file_behind_the_fd(execs: Execs, tmp_path: Path) -> None:
    prog = _copy_binary(tmp_path / "fdprog")
    events = [ev for ev in execs(lambda: _execveat_empty_path(prog)) if ev.ino == prog.stat().st_ino]
    assert len(events) == 1
    assert events[0].path == str(prog)  # bprm->filename is "/dev/fd/N"; the path is the file's


def test_exec_25_levels_deep_reports_the_full_path(execs: Execs, tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*[f"level{i:02d}" for i in range(25)])
    deep.mkdir(parents=True)
    prog = _copy_binary(deep / "deepprog")
    ev = _by_comm(execs(lambda: _run([str(prog)])), "deepprog")
    assert ev.path == os.path.realpath(prog)


def test_exec_of_a_4000_byte_path_reports_it_whole(execs: Execs, tmp_path: Path) -> None:
    # directories of 250-byte names up to about 4000 bytes, reached by relative steps (mkdir of the
    # whole path would pass the 4096-byte limit of a path argument)
    prefix = len(str(tmp_path.resolve()).encode()) + len("/longprog")
    names = [f"{i:02d}" + "d" * 248 for i in range((4000 - prefix) // 251)]
    names.append("e" * (4000 - prefix - 251 * len(names) - 1))
    where = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            os.mkdir(name, dir_fd=where)
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=where)
            os.close(where)
            where = nxt
        out = os.open("longprog", os.O_WRONLY | os.O_CREAT, 0o755, dir_fd=where)
        with open(TRUE, "rb") as src, open(out, "wb") as f:
            f.write(src.read())
        ev = _by_comm(execs(lambda: _run(["./longprog"], cwd=f"/proc/self/fd/{where}")), "longprog")
    finally:
        os.close(where)
    expected = "/".join([str(tmp_path.resolve()), *names, "longprog"])
    assert len(expected.encode()) == 4000
    assert ev.path == expected and ev.path_truncated is UNSET


def test_path_deeper_than_the_step_bound_keeps_its_tail_and_says_truncated(execs: Execs, tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["d"] * (dpath.MAX_STEPS + 10))
    deep.mkdir(parents=True)
    prog = _copy_binary(deep / "cutprog")
    ev = _by_comm(execs(lambda: _run(["./cutprog"], cwd=deep)), "cutprog")
    assert ev.path_truncated is True
    assert ev.path.endswith("/d/d/cutprog") and os.path.realpath(prog).endswith(ev.path)


def test_binary_name_longer_than_comm_has_the_cut_comm_and_the_full_path(execs: Execs, tmp_path: Path) -> None:
    name = "a_binary_with_a_very_long_name"
    prog = _copy_binary(tmp_path / name)
    ev = _by_comm(execs(lambda: _run([str(prog)])), name)
    assert ev.comm == name[:15] and ev.path == str(prog)


def test_exec_on_a_tmpfs_mounted_in_a_private_namespace_crosses_into_it(execs: Execs, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (f'mount -t tmpfs pybpfguard-test "{mnt}" && mkdir "{mnt}/sub" && cp {TRUE} "{mnt}/sub/tmpfsprog"'
              f' && "{mnt}/sub/tmpfsprog"')
    ev = _by_comm(execs(lambda: _run(["unshare", "-m", "--propagation", "private", "sh", "-c", script])),
                  "tmpfsprog")
    assert ev.path == f"{mnt}/sub/tmpfsprog"


def test_exec_through_a_bind_mount_reports_the_path_it_was_reached_by(execs: Execs, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    _copy_binary(src / "bindprog")
    script = f'mount --bind "{src}" "{dst}" && "{dst}/bindprog"'
    ev = _by_comm(execs(lambda: _run(["unshare", "-m", "--propagation", "private", "sh", "-c", script])),
                  "bindprog")
    assert ev.path == f"{dst}/bindprog"  # as d_path and /proc/<pid>/exe give it: the mount used


def test_exec_inside_a_chroot_is_reported_relative_to_the_process_root(execs: Execs, tmp_path: Path) -> None:
    root = tmp_path / "jail"
    (root / "bin").mkdir(parents=True)
    _copy_binary(root / "bin" / "true", BUSYBOX)  # busybox runs the "true" applet by argv[0]
    ev = _by_comm(execs(lambda: _run(["chroot", str(root), "/bin/true"])), "true")
    assert ev.path == "/bin/true"


def test_exec_of_a_memfd_is_named_as_proc_exe_names_it(execs: Execs) -> None:
    code = (
        "import os, sys\n"
        "fd = os.memfd_create('memprog', 0)\n"
        f"os.write(fd, open({TRUE!r}, 'rb').read())\n"
        "os.execve(fd, ['memprog'], {})\n"
    )
    events = execs(lambda: _run([sys.executable, "-c", code]))
    found = [ev for ev in events if ev.path is not UNSET and "memfd:" in ev.path]
    assert [ev.path for ev in found] == ["/memfd:memprog (deleted)"]
