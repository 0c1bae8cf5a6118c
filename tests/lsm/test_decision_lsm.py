"""The generated LSM programs against the table of file-decision cases (tests/decision_table.py), in the VM
tier's guest (this host refuses LSM programs; BPF_PROG_TEST_RUN cannot run them either).

``file_open`` decides an open of a file this test created, ``bprm_check_security`` an exec of a copy of
``true``; each is loaded alone with the agent's maps (own bpffs), so one hook decides. The opener is this
process or its child (same cgroup), the signal is none. Outcome: EPERM (DENY), or success with
``block_stats.blocks`` counted (AUDIT), or success uncounted (ALLOW).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pybpfguard.agent.decision import Verdict
from pybpfguard.agent.maps import INODE_KEY, PinnedMaps
from pybpfguard.agent.programs.emit import AgentProgram, KernelLayout
from pybpfguard.agent.programs.exec_lsm import bprm_check_program
from pybpfguard.agent.programs.file_lsm import file_open_program
from pybpfguard.agent.programs.load import load_program
from pybpfguard.agent.sensors import private_specs
from pybpfguard.bpf.btf.layout import Layout
from pybpfguard.bpf.btf.spec import load_vmlinux
from pybpfguard.bpf.link import attach_lsm
from pybpfguard.bpf.maps import Map
from tests.decision_table import KERNEL_CASES, Case, block_count, kernel_verdict, own_cgid

pytestmark = pytest.mark.kernel

TRUE = shutil.which("true") or "/bin/true"


def _open(path: Path) -> int:
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as err:
        return err.errno or -1
    return 0


def _exec(path: Path) -> int:
    try:
        subprocess.run([str(path)], check=True, timeout=30)
    except PermissionError as err:
        return err.errno or -1
    return 0


@pytest.fixture
def maps(bpffs: Path) -> Iterator[dict[str, Map]]:
    with PinnedMaps.open(bpffs / "pybpfguard") as pins:
        private = {name: Map.create(spec) for name, spec in private_specs(1 << 20).items()}
        try:
            yield {**pins.maps, **private}
        finally:
            for m in private.values():
                m.close()


HOOKS: dict[str, tuple[Callable[[KernelLayout], AgentProgram], Callable[[Path], int]]] = {
    "file_open": (file_open_program, _open),
    "bprm_check": (bprm_check_program, _exec),
}


@pytest.mark.parametrize("hook", list(HOOKS))
@pytest.mark.parametrize("case", KERNEL_CASES, ids=lambda c: c.name)
def test_lsm_programs_decide_every_case_of_the_table(maps: dict[str, Map], tmp_path: Path, hook: str,
                                                     case: Case) -> None:
    if case.cgroup_scoped:
        pytest.skip("programs read deny_cgroup_inode: lead's change")
    generate, act = HOOKS[hook]
    target = tmp_path / "target"
    shutil.copy(TRUE, target)
    st = target.stat()
    key = INODE_KEY.value(ino=st.st_ino, dev=os.major(st.st_dev) << 20 | os.minor(st.st_dev), pad=0)
    case.load_maps(maps, key, own_cgid())
    with load_program(generate(Layout.from_btf(load_vmlinux())), maps) as prog, attach_lsm(prog):
        before = block_count(maps["block_stats"])
        err = act(target)
        counted = block_count(maps["block_stats"]) - before
    assert err in (0, errno.EPERM)
    assert kernel_verdict(err == errno.EPERM, counted) is case.expect
    assert counted == (case.expect is not Verdict.ALLOW)
