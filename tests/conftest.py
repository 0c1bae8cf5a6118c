"""Shared fixtures and the kernel-test policy.

Policy: a test that needs the kernel asks for the ``kernel`` fixture (or is marked ``kernel``).
It skips when the host cannot run BPF (not root, no bpf()). With ``PYBPFGUARD_REQUIRE_KERNEL=1``
(set by ``.ci/run``) every skip is turned into a failure, so nothing passes by skipping.

Safety: fixtures only create and remove their own objects: a private bpffs mount, a child
cgroup under the cgroup2 mount, temp files. Nothing is left behind.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRE_KERNEL = os.environ.get("PYBPFGUARD_REQUIRE_KERNEL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_KERNEL and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under PYBPFGUARD_REQUIRE_KERNEL=1: {reason}"


def _kernel_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not Path("/sys/fs/bpf").exists():
        return "no /sys/fs/bpf"
    return None


@pytest.fixture(scope="session")
def kernel() -> None:
    """Skip (fail under PYBPFGUARD_REQUIRE_KERNEL=1) when this host cannot load BPF programs."""
    reason = _kernel_unavailable_reason()
    if reason:
        pytest.skip(reason)


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    for item in items:
        if item.get_closest_marker("kernel") and "kernel" not in item.fixturenames:
            item.fixturenames.insert(0, "kernel")


@pytest.fixture
def bpffs(kernel: None) -> Iterator[Path]:
    """A private bpffs mounted in a temp dir for pins; unmounted (with everything in it) afterwards."""
    with tempfile.TemporaryDirectory(prefix="pybpfguard-bpffs-") as d:
        subprocess.run(["mount", "-t", "bpf", "bpf", d], check=True)
        try:
            yield Path(d)
        finally:
            subprocess.run(["umount", "-l", d], check=False)


def cgroup2_mount() -> Path:
    """The cgroup v2 mount point, as the agent finds it (/proc/self/mountinfo, never assumed)."""
    from pybpfguard.agent.cgroups import cgroup2_mount as agent_cgroup2_mount

    return Path(os.fsdecode(agent_cgroup2_mount()))


@pytest.fixture
def test_cgroup(kernel: None) -> Iterator[Path]:
    """A fresh child cgroup of the cgroup2 root; its processes are moved back and it is removed after."""
    root = cgroup2_mount()
    path = Path(tempfile.mkdtemp(prefix="pybpfguard-test-", dir=root))
    try:
        yield path
    finally:
        procs = path / "cgroup.procs"
        if procs.exists():
            for pid in procs.read_text().split():
                try:
                    (root / "cgroup.procs").write_text(pid)
                except OSError:
                    pass  # the process exited meanwhile
        path.rmdir()


def shared_dir() -> Path:
    """The project's shared/ folder (the integration guide, the reference): beside the checkout, as CI lays
    it out, or ``PYBPFGUARD_SHARED_DIR``, or the workplace's /work/shared."""
    candidates = [os.environ.get("PYBPFGUARD_SHARED_DIR", ""), Path(__file__).resolve().parents[2] / "shared",
                  "/work/shared"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "seed").is_dir():
            return Path(candidate)
    raise FileNotFoundError(f"no shared/ folder with seed/ in {candidates}")
