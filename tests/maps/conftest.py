"""Helpers for map tests: the bpftool oracle (JSON dump parsed back into bytes)."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from pybpfguard.bpf.maps import Map


def _hex(values: list[str]) -> bytes:
    return bytes(int(v, 16) for v in values)


def bpftool_dump(m: Map) -> dict[bytes, Any]:
    """``bpftool -j map dump id <id>`` as {key bytes: value bytes, or [bytes per CPU] for per-CPU maps}."""
    if shutil.which("bpftool") is None:
        pytest.fail("bpftool is not installed: it is the oracle for map contents (apt-get install bpftool)")
    out = subprocess.run(
        ["bpftool", "-j", "map", "dump", "id", str(m.info().id)], capture_output=True, text=True, check=False
    )
    # bpftool exits non-zero for keyless maps yet prints valid JSON; any other failure is a test failure.
    entries = json.loads(out.stdout) if out.stdout.strip() else pytest.fail(f"bpftool failed: {out.stderr}")
    dump: dict[bytes, Any] = {}
    for entry in entries:
        key = _hex(entry["key"])
        if "values" in entry:
            dump[key] = [_hex(v["value"]) for v in sorted(entry["values"], key=lambda v: v["cpu"])]
        else:
            dump[key] = _hex(entry["value"])
    return dump
