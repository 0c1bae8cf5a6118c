"""Policy rule sets under BPF LSM, in the VM tier's guest: atomic switches, cgroup-scoped rules, allowlist.

``file_open`` and ``bprm_check_security`` are loaded with the agent's pinned maps (own bpffs) and the rule
sets are written by the apply engine (pybpfguard/agent/policy/apply.py) as ``policy apply`` writes them.
Children that the rules apply to run in the test's own cgroup; this process's cgroup is in ``allow_cgroup``
of every set, so only the test's children can be denied an exec in allowlist mode.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybpfguard.agent.maps import AGENT_CONFIG, PinnedMaps
from pybpfguard.agent.paths import inode_key
from pybpfguard.agent.policy.apply import apply_content
from pybpfguard.agent.policy.resolve import RuleSetContent
from pybpfguard.agent.programs.exec_lsm import bprm_check_program
from pybpfguard.agent.programs.file_lsm import file_open_program
from pybpfguard.agent.programs.load import load_program
from pybpfguard.agent.sensors import private_specs
from pybpfguard.agent.statefiles import DenyDb
from pybpfguard.bpf.btf.layout import Layout
from pybpfguard.bpf.btf.spec import load_vmlinux
from pybpfguard.bpf.link import attach_lsm
from pybpfguard.bpf.maps import Map
from tests.daemon.helpers import denied
from tests.decision_table import own_cgid
from tests.rule_switch import assert_denied_throughout

pytestmark = pytest.mark.kernel

TRUE = shutil.which("true") or "/bin/true"

class Rig:
    def __init__(self, pins: PinnedMaps, db: DenyDb) -> None:
        self.pins = pins
        self.db = db
        self.exempt = {own_cgid()}

    def apply(self, content: RuleSetContent, *, reset: bool = True) -> int:
        result = apply_content(self.pins, content, reset=reset, agent_cgids=self.exempt, db=self.db,
                               confirm_timeout_s=0.0)
        return result.live


@pytest.fixture
def rig(bpffs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setenv("PYBPFGUARD_STATE_DIR", str(tmp_path / "st"))
    layout = Layout.from_btf(load_vmlinux())
    with PinnedMaps.open(bpffs / "pybpfguard") as pins:
        private = {name: Map.create(spec) for name, spec in private_specs(1 << 20).items()}
        maps = {**pins.maps, **private}
        pins.agent_config.update_elem(0, AGENT_CONFIG.value(audit_only=0, enforce_signal=0, event_sample_rate=1,
                                                            file_policy_empty=1))
        try:
            with (load_program(file_open_program(layout), maps) as fprog,
                  load_program(bprm_check_program(layout), maps) as eprog, attach_lsm(fprog), attach_lsm(eprog)):
                yield Rig(pins, DenyDb(tmp_path / "st" / "deny.db"))
        finally:
            for m in private.values():
                m.close()


def _files(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        (tmp_path / name).write_text(name)
        out.append(tmp_path / name)
    return out


def _content(*paths: Path, **kw: object) -> RuleSetContent:
    return RuleSetContent(deny_inode={inode_key(p.stat()): 1 for p in paths}, **kw)  # type: ignore[arg-type]


def test_a_rule_both_policies_share_never_lapses_during_100_applies(rig: Rig, tmp_path: Path,
                                                                    test_cgroup: Path) -> None:
    shared, only_x, only_y = _files(tmp_path, "shared", "only-x", "only-y")
    policies = (_content(shared, only_x), _content(shared, only_y))

    def apply(i: int) -> None:
        rig.apply(policies[(i + 1) % 2])
        if i % 20 == 0:  # the new policy's own rule from the moment apply returns; the old one's is gone
            now_y = i % 2 == 0
            assert denied(test_cgroup, only_y) is now_y and denied(test_cgroup, only_x) is not now_y

    apply(1)
    assert_denied_throughout(shared, apply, switches=100, cgroup=test_cgroup)


def test_a_cgroup_scoped_rule_denies_only_its_cgroup_and_allow_cgroup_does_not_exempt_it(
        rig: Rig, tmp_path: Path, test_cgroup: Path) -> None:
    (target,) = _files(tmp_path, "scoped")
    cgid = test_cgroup.stat().st_ino
    rig.apply(RuleSetContent(cgroup_deny_inode={(cgid, inode_key(target.stat()))}, allow_cgroup={cgid}))
    assert denied(test_cgroup, target)
    target.read_text()  # this process is in another cgroup: the rule is not its


def test_allowlist_mode_denies_an_unlisted_executable_and_allows_a_listed_one(rig: Rig, tmp_path: Path,
                                                                              test_cgroup: Path) -> None:
    listed, unlisted = tmp_path / "listed", tmp_path / "unlisted"
    for p in (listed, unlisted):
        shutil.copy(TRUE, p)
        p.chmod(0o755)

    def run(p: Path) -> int | None:
        try:
            return subprocess.run([str(p)], timeout=30, preexec_fn=lambda: (test_cgroup / "cgroup.procs").write_text(
                str(os.getpid()))).returncode
        except PermissionError:
            return None

    rig.apply(RuleSetContent(allow_exec={inode_key(listed.stat())}, allowlist=True))
    try:
        assert run(listed) == 0 and run(unlisted) is None
        assert subprocess.run([str(unlisted)], timeout=30).returncode == 0  # this process's cgroup is exempt
    finally:
        rig.apply(RuleSetContent())  # allowlist off before anything else in the guest execs
    assert run(unlisted) == 0


def test_deny_comm_switches_with_the_rule_set(rig: Rig, tmp_path: Path, test_cgroup: Path) -> None:
    prog = tmp_path / "xminer"
    shutil.copy(TRUE, prog)
    prog.chmod(0o755)

    def run() -> int:
        return subprocess.run([str(prog)], timeout=30, preexec_fn=lambda: (test_cgroup / "cgroup.procs").write_text(
            str(os.getpid()))).returncode

    rig.apply(RuleSetContent(deny_comm={b"xminer"}))
    with pytest.raises(PermissionError):
        run()
    rig.apply(RuleSetContent())
    assert run() == 0
