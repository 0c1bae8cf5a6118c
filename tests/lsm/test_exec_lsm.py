"""The generated ``bprm_check_security`` program (programs/exec_lsm.py) in the VM tier's guest (BPF LSM on).

Each test loads the program with the agent's maps (its own bpffs), denies only a binary it created in
its tmp dir, and execs it from a child: ``deny_comm`` gives EPERM and a ``block`` record with ino=dev=0
and the exec'd filename as path; a denied inode gives EPERM and the binary's real path (``bpf_d_path``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybpfguard.agent.cgroups import CgroupCache
from pybpfguard.agent.events.decode import RecordDecoder
from pybpfguard.agent.events.model import Action, BlockEvent
from pybpfguard.agent.maps import AGENT_CONFIG, INODE_KEY, PinnedMaps
from pybpfguard.agent.programs.exec_lsm import bprm_check_program
from pybpfguard.agent.programs.load import load_program
from pybpfguard.agent.sensors import RING, private_specs
from pybpfguard.bpf.btf.layout import Layout
from pybpfguard.bpf.btf.spec import load_vmlinux
from pybpfguard.bpf.link import attach_lsm
from pybpfguard.bpf.maps import Map
from pybpfguard.bpf.ringbuf import RingReader

pytestmark = pytest.mark.kernel

TRUE = shutil.which("true") or "/bin/true"
SIGTERM = 15


class Guard:
    """The loaded and attached program, its maps, and the block events it wrote."""

    def __init__(self, pins: PinnedMaps, ring: RingReader) -> None:
        self.pins = pins
        self._ring = ring
        self._decoder = RecordDecoder(CgroupCache())

    def configure(self, *, audit: bool, enforce_signal: int = 0) -> None:
        self.pins.agent_config.update_elem(0, AGENT_CONFIG.value(
            audit_only=int(audit), enforce_signal=enforce_signal, event_sample_rate=1,
            sigkill_escalation_threshold=5, sigkill_escalation_window_seconds=30,
            file_policy_empty=int(next(iter(self.pins.deny_inode.keys()), None) is None)))

    def blocks(self) -> list[BlockEvent]:
        events: list[BlockEvent] = []
        self._ring.consume(lambda rec: events.append(self._decoder.decode(rec)))
        return [ev for ev in events if isinstance(ev, BlockEvent)]


@pytest.fixture
def guard(bpffs: Path) -> Iterator[Guard]:
    layout = Layout.from_btf(load_vmlinux())
    with PinnedMaps.open(bpffs / "pybpfguard") as pins:
        private = {name: Map.create(spec) for name, spec in private_specs(1 << 20).items()}
        maps = {**pins.maps, **private}
        try:
            with (load_program(bprm_check_program(layout), maps) as prog, RingReader(maps[RING]) as ring,
                  attach_lsm(prog)):
                yield Guard(pins, ring)
        finally:
            for m in private.values():
                m.close()


def _binary(path: Path) -> Path:
    shutil.copy(TRUE, path)
    path.chmod(0o755)
    return path


def _comm_key(name: str) -> bytes:
    return name.encode().ljust(16, b"\0")


def _exec(path: Path | str, **kw: object) -> int | OSError:
    """Exec *path* in a child; the exit status, or the error exec gave."""
    try:
        return subprocess.run([str(path)], timeout=30, **kw).returncode  # type: ignore[call-overload]
    except OSError as err:
        return err


def _eperm(result: int | OSError) -> bool:
    return isinstance(result, PermissionError)


def test_deny_comm_blocks_the_exec_by_basename_without_a_signal(guard: Guard, tmp_path: Path) -> None:
    prog = _binary(tmp_path / "denyme")
    guard.pins.deny_comm.update_elem(_comm_key("denyme"), 1)
    guard.configure(audit=False, enforce_signal=SIGTERM)  # deny_comm must not send it
    assert _eperm(_exec(prog))
    [ev] = guard.blocks()
    assert (ev.action, ev.ino, ev.dev, ev.path) == (Action.BLOCK, 0, 0, str(prog))
    assert _eperm(_exec("./denyme", cwd=tmp_path))  # the basename, whatever the directory
    assert [ev.path for ev in guard.blocks()] == ["./denyme"]  # the name as exec'd


def test_deny_comm_in_audit_mode_allows_and_reports_audit(guard: Guard, tmp_path: Path) -> None:
    prog = _binary(tmp_path / "auditme")
    guard.pins.deny_comm.update_elem(_comm_key("auditme"), 1)
    guard.configure(audit=True)
    assert _exec(prog) == 0
    [ev] = guard.blocks()
    assert (ev.action, ev.path) == (Action.AUDIT, str(prog))


def test_deny_comm_never_matches_a_longer_name_on_its_cut_comm(guard: Guard, tmp_path: Path) -> None:
    name = "averyveryverylongname"
    guard.pins.deny_comm.update_elem(_comm_key(name[:15]), 1)
    guard.configure(audit=False)
    assert _exec(_binary(tmp_path / name)) == 0
    assert _eperm(_exec(_binary(tmp_path / name[:15])))  # the rule itself works


def test_deny_comm_is_skipped_for_an_allowed_cgroup(guard: Guard, tmp_path: Path, test_cgroup: Path) -> None:
    prog = _binary(tmp_path / "exempted")
    guard.pins.deny_comm.update_elem(_comm_key("exempted"), 1)
    guard.pins.allow_cgroup.update_elem(test_cgroup.stat().st_ino, 1)
    guard.configure(audit=False)

    def in_cgroup() -> None:
        (test_cgroup / "cgroup.procs").write_text(str(os.getpid()))

    assert _exec(prog, preexec_fn=in_cgroup) == 0
    assert guard.blocks() == []
    assert _eperm(_exec(prog))  # outside the allowed cgroup


def test_denied_executable_inode_blocks_a_symlinked_exec_with_its_real_path(guard: Guard, tmp_path: Path) -> None:
    prog = _binary(tmp_path / "denied-inode")
    (tmp_path / "innocent").symlink_to(prog)
    st = prog.stat()
    dev = os.major(st.st_dev) << 20 | os.minor(st.st_dev)
    guard.pins.deny_inode.update_elem(INODE_KEY.value(ino=st.st_ino, dev=dev), 1)
    guard.configure(audit=False)
    assert _eperm(_exec(tmp_path / "innocent"))
    [ev] = guard.blocks()
    assert (ev.action, ev.ino, ev.dev, ev.path) == (Action.BLOCK, st.st_ino, dev, str(prog))


def test_denied_executable_with_sigterm_reports_term(guard: Guard, tmp_path: Path) -> None:
    prog = _binary(tmp_path / "termed")
    st = prog.stat()
    guard.pins.deny_inode.update_elem(
        INODE_KEY.value(ino=st.st_ino, dev=os.major(st.st_dev) << 20 | os.minor(st.st_dev)), 1)
    guard.configure(audit=False, enforce_signal=SIGTERM)
    child = subprocess.Popen(["sh", "-c", f'exec "{prog}"'])
    assert child.wait(timeout=30) == -SIGTERM
    [ev] = guard.blocks()
    assert ev.action == Action.TERM

