"""Fixtures the benchmarks share with the tests, imported (not copied): the private bpffs, the test cgroup,
and the isolated daemon of tests/daemon/conftest.py (private pin root, state dir and agent cgroup)."""

from tests.conftest import bpffs, kernel, test_cgroup
from tests.daemon.conftest import agent_env, start_agent

__all__ = ["agent_env", "bpffs", "kernel", "start_agent", "test_cgroup"]
