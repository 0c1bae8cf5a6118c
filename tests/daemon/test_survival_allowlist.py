"""The survival allowlist at start-up: a full map keeps what it has, any other failure to write it stops the start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pybpfguard.agent.maps import INODE_KEY, pinned_specs
from pybpfguard.bpf.errors import NoSpaceError
from pybpfguard.bpf.maps import Map

pytestmark = pytest.mark.kernel


def test_a_full_survival_allowlist_refuses_a_new_inode_with_the_error_the_daemon_treats_as_full():
    """The kernel is the oracle for "full": the daemon keeps going on exactly this error class."""
    spec = pinned_specs()["survival_allowlist"].replace(max_entries=1)
    with Map.create(spec) as survival:
        survival.update_elem(INODE_KEY.value(ino=1, dev=1), 1)
        with pytest.raises(NoSpaceError):
            survival.update_elem(INODE_KEY.value(ino=2, dev=1), 1)


def test_a_survival_allowlist_the_agent_cannot_write_is_a_clear_start_up_error(agent_env: dict[str, str]):
    """A frozen pinned allowlist (EPERM on every syscall write) must not be swallowed, which would leave the
    host's survival binaries deniable: the daemon refuses to start (exit 1) and names the map and the errno."""
    subprocess.run([sys.executable, "-m", "pybpfguard", "block", "list"], env=agent_env, check=True,
                   capture_output=True, timeout=60)  # creates the pins
    with Map.from_pinned(Path(agent_env["PYBPFGUARD_PIN_ROOT"]) / "survival_allowlist") as survival:
        survival.freeze()
    out = subprocess.run([sys.executable, "-m", "pybpfguard", "run"], env=agent_env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    failed = next(line for line in out.stderr.splitlines() if "[ERROR] start-up failed" in line)
    assert "survival_allow" in failed and "EPERM" in failed
