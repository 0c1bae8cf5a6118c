"""Split BTF for real: Debian's 6.1 kernel (in /boot) and its modules, each module's .BTF split on the
kernel's, checked type by type against ``bpftool btf dump file <ko> -B <vmlinux>``."""

from __future__ import annotations

import lzma
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pybpfguard.bpf.btf import BTF_KIND_FUNC, BTF_KIND_STRUCT, Spec, load_module
from tests.vm.kernels import KernelNotFoundError, find_kernel, tier_named

from .bpftool_raw import bpftool_raw, render

XZ_MAGIC = b"\xfd7zXZ\x00"
MODULES = ("fs/9p/9p.ko", "net/9p/9pnet.ko", "fs/netfs/netfs.ko")


def _kernel_release() -> str:
    # The VM tier's 6.1 kernel, chosen as the VM tier chooses it (newest 6.1 release with its modules).
    try:
        release = find_kernel(tier_named("6.1")).release
    except KernelNotFoundError as err:
        pytest.skip(f"needs Debian's 6.1 kernel (.ci/setup-tests installs it): {err}")
    if shutil.which("bpftool") is None:
        pytest.skip("needs bpftool (.ci/setup-tests installs it)")
    return release


def elf_btf(path: Path | str) -> bytes:
    with open(path, "rb") as f:
        section = ELFFile(f).get_section_by_name(".BTF")
        assert section is not None, f"{path} has no .BTF section"
        return section.data()


@pytest.fixture(scope="session")
def debian_vmlinux(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """The ELF vmlinux decompressed from /boot/vmlinuz-* (xz), and its release; removed afterwards."""
    release = _kernel_release()
    image = Path(f"/boot/vmlinuz-{release}").read_bytes()
    start = image.find(XZ_MAGIC)
    if start < 0:
        pytest.skip(f"/boot/vmlinuz-{release} is not xz-compressed")
    path = tmp_path_factory.mktemp("debian-kernel") / "vmlinux"
    path.write_bytes(lzma.LZMADecompressor().decompress(image[start:]))
    yield path, release
    path.unlink()


@pytest.fixture(scope="session")
def debian_base(debian_vmlinux: tuple[Path, str]) -> Spec:
    return Spec(elf_btf(debian_vmlinux[0]), source="debian vmlinux")


def _bpftool_func_id(path: str, name: str) -> int:
    """The id bpftool gives the FUNC *name* in the BTF of *path* (the oracle; ids change with every build)."""
    hits = [tid for tid, text in bpftool_raw(path).items() if text.startswith(f"[{tid}] FUNC '{name}' ")]
    assert len(hits) == 1, f"bpftool lists {len(hits)} FUNC {name} in {path}"
    return hits[0]


def test_attach_id_on_the_other_kernel_differs_and_is_resolved_there(
    debian_vmlinux: tuple[Path, str], debian_base: Spec, vmlinux: Spec
) -> None:
    debian_id = _bpftool_func_id(str(debian_vmlinux[0]), "bpf_lsm_file_open")
    host_id = _bpftool_func_id("/sys/kernel/btf/vmlinux", "bpf_lsm_file_open")
    assert debian_base.attach_btf_id_for("lsm", "file_open") == debian_id
    assert vmlinux.attach_btf_id_for("lsm", "file_open") == host_id


@pytest.mark.parametrize("module", MODULES)
def test_module_btf_split_on_vmlinux_decodes_as_bpftool_prints_it(
    debian_vmlinux: tuple[Path, str], debian_base: Spec, module: str
) -> None:
    vmlinux_path, release = debian_vmlinux
    ko = Path(f"/lib/modules/{release}/kernel/{module}")
    if not ko.exists():
        pytest.skip(f"{ko} not installed")
    expected = bpftool_raw(str(ko), base=str(vmlinux_path))
    split = Spec(elf_btf(ko), base=debian_base, source=str(ko))
    assert split.first_id == debian_base.type_count == min(expected)
    assert split.type_count == max(expected) + 1
    for typ in split:
        assert render(split, typ) == expected[typ.id]


def test_load_module_reads_btf_dir_and_finds_types_of_module_and_base(
    debian_vmlinux: tuple[Path, str], debian_base: Spec, tmp_path: Path
) -> None:
    release = debian_vmlinux[1]
    (tmp_path / "9p").write_bytes(elf_btf(f"/lib/modules/{release}/kernel/fs/9p/9p.ko"))
    split = load_module("9p", base=debian_base, btf_dir=tmp_path)
    v9fs = split.find(BTF_KIND_STRUCT, "v9fs_session_info")
    assert v9fs.id >= split.first_id
    assert split.find_id(BTF_KIND_STRUCT, "task_struct") == debian_base.find_id(BTF_KIND_STRUCT, "task_struct")
    # a module member whose type lives in the base: offsets resolve across the split
    assert split.member("v9fs_session_info", "uname").size == 8
    assert split.find_ids(BTF_KIND_FUNC, "v9fs_vfs_lookup")
