"""The VM tier's boot files: vmlinux out of the installed bzImage, and an initramfs the cpio tool reads."""

from __future__ import annotations

import subprocess
from pathlib import Path

from vm.harness import BUSYBOX, find_kernel
from vm.initramfs import CpioWriter, build_initramfs, module_load_order
from vm.kernel_image import extract_vmlinux, find_payload, has_pvh_note


def test_vmlinux_extracted_from_installed_bzimage_is_an_elf_with_a_pvh_entry_note() -> None:
    _, vmlinuz = find_kernel()
    image = vmlinuz.read_bytes()
    payload = find_payload(image)
    assert payload.offset > 0x200
    assert payload.offset + payload.length <= len(image)
    elf = extract_vmlinux(vmlinuz)
    assert elf[:4] == b"\x7fELF"
    assert has_pvh_note(elf)


def test_module_load_order_puts_every_dependency_before_its_user() -> None:
    release, _ = find_kernel()
    modules_dir = Path("/lib/modules") / release
    order = module_load_order(modules_dir)
    names = [p.rsplit("/", 1)[-1].split(".ko")[0] for p in order]
    assert names[-1] == "9p"
    deps = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    for i, path in enumerate(order):
        assert all(dep in order[:i] for dep in deps[path]), f"{path} loaded before one of {deps[path]}"


def test_initramfs_is_read_back_by_cpio_with_init_busybox_console_and_9p_modules(tmp_path: Path) -> None:
    release, _ = find_kernel()
    archive = build_initramfs(release, BUSYBOX)
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
