"""Build the VM tier's initramfs: a cpio "newc" archive with busybox, the 9p modules and /init.

The archive format is the kernel's (Documentation/driver-api/early-userspace/buffer-format.rst): per entry
the ASCII magic "070701", 13 fields of 8 hex digits (ino, mode, uid, gid, nlink, mtime, filesize,
devmajor, devminor, rdevmajor, rdevminor, namesize, check), the NUL-terminated name padded to 4 bytes,
then the data padded to 4 bytes; a "TRAILER!!!" entry ends it. It is left uncompressed: decompressing
under TCG costs more than reading a few MB.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .guest_init import INIT_SCRIPT

# The modules that give a microvm guest a 9p root: virtio over MMIO and 9p over virtio. Their
# dependencies (virtio, virtio_ring, netfs, fscache, 9pnet ...) come from modules.dep.
ROOT_MODULES = ("virtio_mmio", "9pnet_virtio", "9p")

# Mount points and homes /init needs (guest_init.py); "keep" holds a host path while /tmp is covered.
_DIRECTORIES = ("bin", "dev", "proc", "sys", "ctl", "keep", "newroot", "lib", "lib/modules")
_MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


class InitramfsError(Exception):
    """The initramfs cannot be built; the message names the missing file or module."""


@dataclass
class CpioWriter:
    """Accumulate a cpio newc archive in memory; ``finish()`` returns the bytes with the trailer."""

    _out: bytearray = field(default_factory=bytearray)
    _next_ino: int = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self._next_ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self._next_ino += 1
        self._out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        self._pad()
        self._out += data
        self._pad()

    def _pad(self) -> None:
        self._out += b"\0" * (-len(self._out) % 4)

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return bytes(self._out)


def _module_name(relpath: str) -> str:
    base = relpath.rsplit("/", 1)[-1]
    for suffix in _MODULE_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def module_load_order(modules_dir: Path, wanted: tuple[str, ...] = ROOT_MODULES) -> list[str]:
    """Relative paths (as in modules.dep) of *wanted* and their dependencies, each after its dependencies.

    A module built into the kernel (listed in modules.builtin) needs no loading and is left out.
    Raises InitramfsError naming a module that is neither in modules.dep nor built in.
    """
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[_module_name(path)] = (path, rest.split())
    builtin_file = modules_dir / "modules.builtin"
    builtin = {_module_name(p) for p in builtin_file.read_text().split()} if builtin_file.exists() else set()

    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name in builtin:
            return
        if name not in deps:
            raise InitramfsError(f"module {name!r} is not in {modules_dir}/modules.dep nor built in")
        seen.add(name)
        path, needs = deps[name]
        for dep in needs:
            visit(_module_name(dep))
        order.append(path)

    for name in wanted:
        visit(name.replace("-", "_"))
    return order


def _uncompressed_module(path: Path) -> bytes:
    """The .ko bytes of *path*, decompressing .ko.xz/.ko.gz in Python and .ko.zst with the zstd tool."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        if shutil.which("zstd") is None:
            raise InitramfsError(f"{path} is zstd-compressed and the zstd tool is not installed")
        return subprocess.run(["zstd", "-dcq"], input=data, capture_output=True, check=True).stdout
    return data


def _strip_compression(relpath: str) -> str:
    for suffix in _MODULE_SUFFIXES[1:]:
        if relpath.endswith(suffix):
            return relpath[: -len(suffix) + len(".ko")]
    return relpath


def build_initramfs(kernel_release: str, busybox: Path, modules_root: Path = Path("/lib/modules")) -> bytes:
    """The initramfs bytes for *kernel_release*: /bin/busybox, /init, /dev/console and the 9p modules.

    Modules keep their modules.dep path under /lib/modules/<release>/, uncompressed (``.ko``); /init
    loads them in the order of module_load_order(). Raises InitramfsError if a module is missing.
    """
    modules_dir = modules_root / kernel_release
    order = module_load_order(modules_dir)
    cpio = CpioWriter()
    for d in (*_DIRECTORIES, f"lib/modules/{kernel_release}"):
        cpio.directory(d)
    # The kernel opens /dev/console for init's stdio before /init mounts devtmpfs
    # (Documentation/admin-guide/devices.txt: char 5:1).
    cpio.char_device("dev/console", 5, 1)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    created: set[str] = set()
    guest_paths = []
    for relpath in order:
        guest_rel = _strip_compression(relpath)
        parts = guest_rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = f"lib/modules/{kernel_release}/" + "/".join(parts[:i])
            if d not in created:
                created.add(d)
                cpio.directory(d)
        cpio.file(f"lib/modules/{kernel_release}/{guest_rel}", _uncompressed_module(modules_dir / relpath))
        guest_paths.append(f"/lib/modules/{kernel_release}/{guest_rel}")
    cpio.file("init", INIT_SCRIPT.replace("@MODULES@", " ".join(guest_paths)).encode(), 0o755)
    return cpio.finish()
