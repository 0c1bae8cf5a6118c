"""``policy apply`` against a running daemon on this host (fanotify): a rule both policies hold is never
undenied while policies alternate (a child opens it in a tight loop, tests/rule_switch.py), a rule only the
new policy holds denies from the moment apply returns, and one only the old policy held opens after."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pybpfguard.agent.paths import kernel_dev
from tests.guard.conftest import child_errno, in_cgroup
from tests.rule_switch import assert_denied_throughout

pytestmark = pytest.mark.kernel

APPLIES = 20


def _policy(path: Path, shared: Path, only: Path, cgroup: Path, scope: str) -> Path:
    """A policy denying *only* by path and *shared* by path, or to *cgroup* only by ``dev:ino`` (no path)."""
    if scope == "deny_path":
        body = f"[deny_path]\n{shared}\n{only}\n"
    else:
        st = os.stat(shared)
        body = f"[deny_path]\n{only}\n[cgroup_deny_inode]\n{cgroup} {kernel_dev(st.st_dev)}:{st.st_ino}\n"
    path.write_text(f"version=6\n{body}")
    return path


@pytest.mark.parametrize("scope", ["deny_path", "cgroup_deny_inode"])
def test_policy_apply_never_undenies_a_rule_both_policies_hold(start_agent, tmp_path: Path, test_cgroup: Path,
                                                                scope: str) -> None:
    agent = start_agent("--enforce", "--enforce-signal=none")
    shared, first, second = (tmp_path / n for n in ("shared", "a", "b"))
    for f in (shared, first, second):
        f.write_text("s3cret")
    policies = (_policy(tmp_path / "a.conf", shared, first, test_cgroup, scope),
                _policy(tmp_path / "b.conf", shared, second, test_cgroup, scope))
    agent.cli("policy", "apply", "--reset", str(policies[0]))
    assert child_errno("open", str(shared), prefix=in_cgroup(test_cgroup)) == errno.EPERM

    def switch(i: int) -> None:
        new, old = (second, first) if i % 2 == 0 else (first, second)
        out = agent.cli("policy", "apply", "--reset", str(policies[(i + 1) % 2]), check=False)
        assert out.returncode == 0, f"apply {i} exited {out.returncode}: {out.stderr}"
        if i % 5 == 4:
            assert child_errno("open", str(new), prefix=in_cgroup(test_cgroup)) == errno.EPERM
            assert child_errno("open", str(old), prefix=in_cgroup(test_cgroup)) == 0

    assert_denied_throughout(shared, switch, switches=APPLIES, cgroup=test_cgroup)
    if scope == "cgroup_deny_inode":  # the cgroup-scoped rule denies its cgroup only
        assert child_errno("open", str(shared)) == 0
