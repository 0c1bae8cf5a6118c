"""Helpers the daemon tests (host tier and VM tier) share."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pybpfguard.agent.events.schema import validate
from pybpfguard.agent.paths import kernel_dev
from tests.daemon.conftest import AgentProcess, run_in_cgroup


def check_lines(agent: AgentProcess) -> None:
    """Every stdout line is one complete JSON object (a newline in a name never splits one) and validates
    against event-schema.json."""
    for line in agent.lines:
        assert line.endswith(b"\n") and line.count(b"\n") == 1, line
        validate(json.loads(line))


def ino_dev(path: str | bytes | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_ino, kernel_dev(st.st_dev)


def path_of_length(base: Path, total: int) -> Path:
    """A file path of exactly *total* bytes under *base*: directories of up to 200-byte names."""
    left = total - len(os.fsencode(str(base))) - 1
    parts = []
    while left > 200:
        parts.append("d" * 199)
        left -= 200
    parts.append("f" * left)
    path = base.joinpath(*parts)
    assert len(os.fsencode(str(path))) == total
    return path


def denied(cgroup: Path, path: Path) -> bool:
    """``cat <path>`` from a child in *cgroup*: True when refused with EPERM, False when it reads the file;
    AssertionError on any other failure."""
    out = run_in_cgroup(cgroup, ["cat", str(path)])
    if out.returncode == 0:
        return False
    assert b"Operation not permitted" in out.stderr, out.stderr
    return True
