"""Fixtures for BTF tests: the host's vmlinux BTF and bpftool's dump of it (cached per session)."""

from __future__ import annotations

import os
import shutil
import struct

import pytest

from pybpfguard.bpf.btf import Spec
from pybpfguard.bpf.btf.kinds import BTF_HEADER, BTF_MAGIC

from .bpftool_raw import bpftool_raw

VMLINUX = "/sys/kernel/btf/vmlinux"


@pytest.fixture(scope="session")
def vmlinux() -> Spec:
    if not os.path.exists(VMLINUX):
        pytest.skip("no /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF unset)")
    return Spec.load(VMLINUX)


@pytest.fixture(scope="session")
def vmlinux_raw(vmlinux: Spec) -> dict[int, str]:
    """bpftool's raw dump of vmlinux, {type id: text}."""
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool not installed (apt-get install bpftool)")
    return bpftool_raw(VMLINUX)


def raw_blob(records: list[bytes], strings: bytes) -> bytes:
    """A BTF blob made by hand: header, the *records* (each already encoded), *strings* (starts with NUL)."""
    types = b"".join(records)
    return BTF_HEADER.pack(BTF_MAGIC, 1, 0, BTF_HEADER.size, 0, len(types), len(types), len(strings)) + types + strings


def record(name_off: int, kind: int, vlen: int, size_or_type: int, *extra: int, kind_flag: bool = False) -> bytes:
    """One struct btf_type plus its extra u32 words."""
    info = (int(kind_flag) << 31) | (kind << 24) | vlen
    return struct.pack(f"<III{len(extra)}I", name_off, info, size_or_type, *extra)
