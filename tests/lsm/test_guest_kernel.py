"""The VM tier's guest is what the BPF LSM tests need: BPF LSM active, kernel BTF, our package importable."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest


def test_guest_is_the_vm_tier_and_not_the_host() -> None:
    assert os.environ.get("PYBPFGUARD_IN_VM") == "1"


def test_bpf_is_an_active_lsm_in_the_guest(kernel: None) -> None:
    lsms = Path("/sys/kernel/security/lsm").read_text().split(",")
    assert "bpf" in lsms


def test_guest_kernel_exposes_vmlinux_btf(kernel: None) -> None:
    btf = Path("/sys/kernel/btf/vmlinux")
    # struct btf_header (include/uapi/linux/btf.h): u16 magic 0xeB9F, little endian on x86.
    assert btf.read_bytes()[:2] == b"\x9f\xeb"


def test_pybpfguard_imports_from_the_read_only_host_tree() -> None:
    import pybpfguard.bpf

    assert Path(pybpfguard.bpf.__file__).is_file()


def test_guest_has_its_own_writable_bpffs_and_tmp(kernel: None, tmp_path: Path) -> None:
    with open("/proc/self/mountinfo") as f:
        fstypes = {line.split(" - ")[1].split()[0] for line in f}
    assert {"bpf", "tmpfs", "cgroup2", "securityfs"} <= fstypes
    (tmp_path / "probe").write_text("x")
    assert (tmp_path / "probe").read_text() == "x"


@pytest.mark.parametrize("path", ["/sys/fs/bpf", "/sys/fs/cgroup", "/sys/kernel/tracing"])
def test_guest_mounts_kernel_filesystems_where_tools_look(path: str) -> None:
    assert os.path.ismount(path)


def test_guest_loopback_is_up_for_socket_hook_tests() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname(), timeout=5)
        conn, _ = server.accept()
        conn.close()
        client.close()


def test_trampoline_probes_work_in_the_guest(kernel: None) -> None:
    """The host exempts the LSM and fentry probes because its kernel refuses trampolines; a stock kernel
    must load them, so a regression of those probes fails here."""
    from pybpfguard.bpf import features
    from pybpfguard.bpf.types import ProgType

    features.clear_cache()
    for result in (features.prog_type(ProgType.BPF_PROG_TYPE_LSM), features.attach_fentry(), features.bpf_lsm()):
        assert result.status is features.Status.AVAILABLE, result
