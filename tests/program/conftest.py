"""Fixtures for program tests: the active-LSM list, readable even where securityfs is not mounted."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybpfguard.bpf.lsm_support import DEFAULT_LSM_PATH, LSM_PATH_ENV


@pytest.fixture
def lsm_list(kernel: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The kernel's active-LSM list file. If securityfs is not mounted, mount a private one for the test
    (PYBPFGUARD_LSM_PATH points at it) and unmount it afterwards."""
    if os.path.exists(DEFAULT_LSM_PATH):
        monkeypatch.delenv(LSM_PATH_ENV, raising=False)
        yield Path(DEFAULT_LSM_PATH)
        return
    with tempfile.TemporaryDirectory(prefix="pybpfguard-securityfs-") as d:
        subprocess.run(["mount", "-t", "securityfs", "securityfs", d], check=True)
        try:
            monkeypatch.setenv(LSM_PATH_ENV, f"{d}/lsm")
            yield Path(d, "lsm")
        finally:
            subprocess.run(["umount", d], check=False)
