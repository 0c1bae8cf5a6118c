"""The VM tier's boot files, for each kernel tier: vmlinux out of the bzImage, an initramfs the cpio tool
reads, and the kernel selection itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from vm.harness import BUSYBOX, VMKernelMissingError, kernel_for
from vm.initramfs import CpioWriter, build_initramfs, module_load_order
from vm.kernel_image import extract_vmlinux, find_payload, has_pvh_note
from vm.kernels import TIERS, GuestKernel, find_kernel, tier_named
from vm.pytest_items import tier_kernel_or_skip


@pytest.fixture(params=[t.series for t in TIERS])
def guest_kernel(request: pytest.FixtureRequest) -> GuestKernel:
    """Each tier's kernel; an optional tier that is not installed skips (fails under REQUIRE_KERNEL)."""
    return tier_kernel_or_skip(request.param)


def test_vmlinux_extracted_from_bzimage_is_an_elf_with_a_pvh_entry_note(guest_kernel: GuestKernel) -> None:
    image = guest_kernel.vmlinuz.read_bytes()
    payload = find_payload(image)
    assert payload.offset > 0x200
    assert payload.offset + payload.length <= len(image)
    elf = extract_vmlinux(guest_kernel.vmlinuz)
    assert elf[:4] == b"\x7fELF"
    assert has_pvh_note(elf)


def test_module_load_order_puts_every_dependency_before_its_user(guest_kernel: GuestKernel) -> None:
    modules_dir = guest_kernel.modules_dir
    order = module_load_order(modules_dir)
    names = [p.rsplit("/", 1)[-1].split(".ko")[0] for p in order]
    assert names[-1] == "9p"
    deps = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    for i, path in enumerate(order):
        assert all(dep in order[:i] for dep in deps[path]), f"{path} loaded before one of {deps[path]}"


def test_initramfs_is_read_back_by_cpio_with_init_busybox_console_and_9p_modules(
    guest_kernel: GuestKernel, tmp_path: Path
) -> None:
    archive = build_initramfs(guest_kernel.release, BUSYBOX, guest_kernel.modules_dir.parent)
    listing = subprocess.run(
        ["cpio", "-itv", "--quiet"], input=archive, capture_output=True, check=True
    ).stdout.decode()
    lines = {line.split()[-1]: line for line in listing.splitlines() if "->" not in line}
    assert lines["init"].startswith("-rwxr-xr-x")
    assert lines["bin/busybox"].startswith("-rwxr-xr-x")
    assert lines["dev/console"].startswith("crw-------")
    assert "5,   1" in lines["dev/console"]
    assert any(name.endswith("/fs/9p/9p.ko") for name in lines)
    subprocess.run(["cpio", "-id", "--quiet"], input=archive, cwd=tmp_path, check=True)
    assert (tmp_path / "bin/busybox").read_bytes() == BUSYBOX.read_bytes()


def test_cpio_writer_pads_names_and_data_to_four_bytes_for_the_kernel_unpacker(tmp_path: Path) -> None:
    cpio = CpioWriter()
    cpio.directory("d")
    cpio.file("d/odd", b"12345", 0o600)
    cpio.symlink("d/link", "odd")
    archive = cpio.finish()
    assert len(archive) % 4 == 0
    subprocess.run(["cpio", "-id", "--quiet"], input=archive, cwd=tmp_path, check=True)
    assert (tmp_path / "d/odd").read_bytes() == b"12345"
    assert (tmp_path / "d/link").readlink() == Path("odd")


def _fake_kernel(root: Path, release: str, modules_under: str = "lib/modules") -> None:
    (root / "boot").mkdir(parents=True, exist_ok=True)
    (root / "boot" / f"vmlinuz-{release}").write_bytes(b"")
    (root / modules_under / release).mkdir(parents=True)
    (root / modules_under / release / "modules.dep").write_text("")


def test_each_tier_picks_the_newest_release_of_its_own_series_by_version_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    for release in ("6.1.0-9-amd64", "6.1.0-57-amd64", "6.10.3-amd64"):
        _fake_kernel(old, release)
    _fake_kernel(old, "6.1.0-99-amd64", modules_under="nowhere")  # no modules.dep: not usable
    (old / "nowhere" / "6.1.0-99-amd64" / "modules.dep").unlink()
    _fake_kernel(new, "6.12.9+deb13-amd64", modules_under="usr/lib/modules")
    _fake_kernel(new, "6.12.117+deb13-amd64", modules_under="usr/lib/modules")
    monkeypatch.setenv("PYBPFGUARD_VM_ROOTS", os.pathsep.join((str(old), str(new))))
    picked = {series: find_kernel(tier_named(series)) for series in ("6.1", "6.12")}
    assert picked["6.1"].release == "6.1.0-57-amd64"  # not the lexically first 6.1.0-9, not 6.10
    assert picked["6.1"].modules_dir == old / "lib/modules/6.1.0-57-amd64"
    assert picked["6.12"].release == "6.12.117+deb13-amd64"
    assert picked["6.12"].vmlinuz == new / "boot/vmlinuz-6.12.117+deb13-amd64"


def test_a_tier_without_a_kernel_names_itself_and_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_kernel(tmp_path, "6.1.0-57-amd64")
    monkeypatch.setenv("PYBPFGUARD_VM_ROOTS", str(tmp_path))
    with pytest.raises(VMKernelMissingError) as excinfo:
        kernel_for("6.12")
    assert excinfo.value.tier == "6.12"
    assert "no usable 6.12 kernel" in str(excinfo.value)
    assert ".ci/vm-kernels" in str(excinfo.value)
