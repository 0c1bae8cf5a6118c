"""A clang-built LSM program loaded by pybpfguard.bpf.elf (no libbpf), in the VM tier's guests: CO-RE reads of
``file->f_inode->i_ino`` resolved against each guest kernel's BTF, a map relocation, attach by section."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from pybpfguard.bpf.elf.collection import Collection

pytestmark = pytest.mark.kernel

SOURCE = Path(__file__).parent / "data" / "elf_deny_open.c"


def _compile(tmp_path: Path) -> Path:
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        pytest.fail("clang-19 is not installed (the test command installs it)")
    out = tmp_path / "deny.o"
    subprocess.run([clang, "-target", "bpf", "-g", "-O2", "-c", str(SOURCE), "-o", str(out)], check=True,
                   capture_output=True, timeout=300)
    return out


def test_a_clang_built_file_open_program_denies_exactly_the_inode_in_its_map(kernel: None, tmp_path: Path) -> None:
    secret, other = tmp_path / "secret", tmp_path / "other"
    secret.write_text("s3cret")
    other.write_text("fine")
    coll = Collection.open(_compile(tmp_path))
    try:
        coll.load()
        coll.maps["denied"].update_elem(struct.pack("<Q", os.stat(secret).st_ino), b"\x01")
        coll.attach()
        with pytest.raises(PermissionError) as exc:
            secret.open().close()
        assert exc.value.errno == errno.EPERM
        assert other.read_text() == "fine"
    finally:
        coll.close()
    assert secret.read_text() == "s3cret"  # detached with the collection
