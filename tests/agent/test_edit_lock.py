"""The rule-edit lock (rulesync.edit_lock): a stuck or foreign holder is an error naming the lock, never a hang."""

from __future__ import annotations

import fcntl
import os
import time

import pytest

from pybpfguard.agent.rulesync import LOCK_NAME, edit_lock
from pybpfguard.agent.trust import UntrustedPathError


def test_a_lock_held_by_a_stuck_edit_times_out_with_an_error_naming_it(tmp_path):
    state = tmp_path / "st"
    with edit_lock(state / "deny.db"):
        pass  # creates the directory and the lock file
    fd = os.open(state / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another process's edit, stopped halfway, would
        started = time.monotonic()
        with (pytest.raises(TimeoutError, match=f"{state / LOCK_NAME}: another rule edit holds the lock"),
              edit_lock(state / "deny.db", timeout_s=0.3)):
            pass
        assert 0.3 <= time.monotonic() - started < 5
    finally:
        os.close(fd)
    with edit_lock(state / "deny.db", timeout_s=0.3):
        pass  # released: free again


def test_a_lock_file_that_is_not_the_agents_own_is_refused(tmp_path):
    state = tmp_path / "st"
    state.mkdir(mode=0o700)
    lock = state / LOCK_NAME
    lock.touch(mode=0o666)
    os.chmod(lock, 0o666)  # left by an older, careless setup: anyone could open and hold it
    with pytest.raises(UntrustedPathError, match="writable by group or other"), edit_lock(state / "deny.db"):
        pass
