"""A BPF LSM program built by our assembler and loaded by raw bpf() denies exactly one file, and only
while its link is open (runs in the VM tier's guest: this host refuses LSM programs)."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest

from pybpfguard.bpf._sys import Fd, prog_load
from pybpfguard.bpf._sys.link import link_create
from pybpfguard.bpf.asm import BPF_B, BPF_DW, BPF_H, BPF_JNE, BPF_W, R0, R1, R2, R3, Insn, finalize
from pybpfguard.bpf.btf import BTF_KIND_FUNC, Spec, load_vmlinux
from pybpfguard.bpf.errors import SyscallError
from pybpfguard.bpf.types import AttachType, ProgType

_LOAD_SIZE = {1: BPF_B, 2: BPF_H, 4: BPF_W, 8: BPF_DW}
LOG_BYTES = 64 * 1024


def _load_member(spec: Spec, dst: int, src: int, type_name: str, path: str) -> Insn:
    """``dst = src->path`` as one BTF-typed load, its offset and width taken from the guest's BTF."""
    member = spec.member(type_name, path)
    return Insn.ldx_mem(_LOAD_SIZE[member.size], dst, src, member.offset)


def deny_one_inode_program(spec: Spec, ino: int, s_dev: int) -> list[Insn]:
    """LSM ``file_open(struct file *file)``: -EPERM if ``file->f_inode`` is (ino, s_dev), else 0.

    An LSM program's context is the hook's arguments as u64s (``ctx[0]`` is ``file``); loads through
    ``file`` are BTF pointer loads, checked by the verifier, not bpf_probe_read calls.
    """
    return [
        Insn.ldx_mem(BPF_DW, R1, R1, 0),
        _load_member(spec, R2, R1, "file", "f_inode"),
        _load_member(spec, R3, R2, "inode", "i_ino"),
        Insn.ld_imm64(R1, ino),
        Insn.jmp_reg(BPF_JNE, R3, R1, to="allow"),
        _load_member(spec, R2, R2, "inode", "i_sb"),
        _load_member(spec, R3, R2, "super_block", "s_dev"),
        Insn.jmp_imm(BPF_JNE, R3, s_dev, to="allow"),
        Insn.mov64_imm(R0, -errno.EPERM),
        Insn.exit(),
        Insn.mov64_imm(R0, 0).labelled("allow"),
        Insn.exit(),
    ]


def load_deny_one_inode(path: Path) -> Fd:
    """Load the program for *path*'s inode, attach_btf_id from the running kernel's BTF; owned prog fd."""
    spec = load_vmlinux()
    st = path.stat()
    s_dev = os.major(st.st_dev) << 20 | os.minor(st.st_dev)  # the kernel's dev_t encoding (docs/kernel.md)
    log = ctypes.create_string_buffer(LOG_BYTES)
    try:
        return prog_load(
            ProgType.BPF_PROG_TYPE_LSM,
            finalize(deny_one_inode_program(spec, st.st_ino, s_dev)),
            b"GPL",  # LSM programs need a GPL-compatible license
            expected_attach_type=AttachType.BPF_LSM_MAC,
            attach_btf_id=spec.find_id(BTF_KIND_FUNC, "bpf_lsm_file_open"),
            prog_name=b"deny_one_inode",
            log_level=1,
            log_buf=log,
        )
    except SyscallError as err:
        pytest.fail(f"{err}\nverifier log:\n{log.value.decode(errors='replace')}")


def test_file_open_of_denied_inode_fails_with_eperm_only_while_the_link_is_open(kernel: None, tmp_path: Path) -> None:
    denied = tmp_path / "denied"
    denied.write_text("secret")
    other = tmp_path / "other"
    other.write_text("fine")

    with load_deny_one_inode(denied) as prog, link_create(prog, AttachType.BPF_LSM_MAC) as link:
        with pytest.raises(PermissionError) as excinfo:
            denied.open()
        assert excinfo.value.errno == errno.EPERM
        assert other.read_text() == "fine"
        link.close()
        assert denied.read_text() == "secret"
