"""Extract the uncompressed ELF vmlinux from a bzImage (/boot/vmlinuz-*), so qemu -M microvm boots it directly.

The ELF carries a PVH entry note, so qemu jumps straight into the kernel: no real-mode setup and no
decompressor running under TCG emulation (the decompressor alone costs seconds there).

Layout (Documentation/x86/boot.rst, "The Real-Mode Kernel Header"): ``setup_sects`` u8 at 0x1f1, the
"HdrS" magic at 0x202, ``payload_offset`` u32 at 0x248 and ``payload_length`` u32 at 0x24c (boot protocol
>= 2.08), both relative to the protected-mode code, which starts at ``(setup_sects or 4) + 1`` sectors of
512 bytes. The payload's format is known by its magic bytes (scripts/extract-vmlinux lists the same ones).
"""

from __future__ import annotations

import bz2
import io
import lzma
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile

# include/xen/interface/elfnote.h: XEN_ELFNOTE_PHYS32_ENTRY, the 32-bit PVH entry point qemu looks for.
XEN_ELFNOTE_PHYS32_ENTRY = 18

_SECTOR_BYTES = 512
_SETUP_SECTS_OFF = 0x1F1
_HDRS_OFF = 0x202
_PAYLOAD_OFF = 0x248  # u32 payload_offset, u32 payload_length


class KernelImageError(Exception):
    """The kernel image could not be turned into a bootable ELF; the message names the file and the step."""


def _decompress_stdlib(make: Callable[[], object]) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        # Streaming decompressors stop at the end of the stream: the kernel appends a 4-byte size after it.
        return make().decompress(data)  # type: ignore[attr-defined]

    return run


def _decompress_tool(*argv: str) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        if shutil.which(argv[0]) is None:
            raise KernelImageError(f"payload needs {argv[0]!r} to decompress and it is not installed")
        # Trailing bytes after the stream make some tools exit non-zero after writing everything: judge by
        # the output (an ELF is checked afterwards), not by the exit status.
        proc = subprocess.run(argv, input=data, capture_output=True, check=False)
        if not proc.stdout:
            raise KernelImageError(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout

    return run


# (name, magic, decompressor); magics as in scripts/extract-vmlinux.
_FORMATS: tuple[tuple[str, bytes, Callable[[bytes], bytes]], ...] = (
    ("gzip", b"\x1f\x8b\x08", _decompress_stdlib(lambda: zlib.decompressobj(wbits=31))),
    ("xz", b"\xfd7zXZ\x00", _decompress_stdlib(lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ))),
    ("bzip2", b"BZh", _decompress_stdlib(bz2.BZ2Decompressor)),
    ("lzma", b"\x5d\x00\x00\x00", _decompress_stdlib(lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE))),
    ("zstd", b"\x28\xb5\x2f\xfd", _decompress_tool("zstd", "-dcq")),
    ("lz4", b"\x02\x21\x4c\x18", _decompress_tool("lz4", "-dcq")),
    ("lzo", b"\x89LZO", _decompress_tool("lzop", "-dcq")),
)


@dataclass(frozen=True, slots=True)
class Payload:
    """Where the compressed kernel sits in the bzImage: ``offset``/``length`` in bytes, ``fmt`` its format."""

    fmt: str
    offset: int
    length: int


def find_payload(image: bytes) -> Payload:
    """Locate and identify the compressed payload of a bzImage.

    Uses the boot header's payload_offset/length when present, else the first known magic in the file.
    Raises KernelImageError if neither finds a known compression format.
    """
    if len(image) > _PAYLOAD_OFF + 8 and image[_HDRS_OFF : _HDRS_OFF + 4] == b"HdrS":
        setup_sects = image[_SETUP_SECTS_OFF] or 4  # 0 means 4, for ancient loaders
        pm_start = (setup_sects + 1) * _SECTOR_BYTES
        rel_off, length = struct.unpack_from("<II", image, _PAYLOAD_OFF)
        start = pm_start + rel_off
        for fmt, magic, _ in _FORMATS:
            if image.startswith(magic, start):
                return Payload(fmt, start, length)
    hits = [(image.find(magic), fmt) for fmt, magic, _ in _FORMATS]
    found = sorted((pos, fmt) for pos, fmt in hits if pos >= 0)
    if not found:
        raise KernelImageError("no known compressed payload (gzip, xz, bzip2, lzma, zstd, lz4, lzo) found")
    pos, fmt = found[0]
    return Payload(fmt, pos, len(image) - pos)


def _align4(n: int) -> int:
    return (n + 3) & ~3


def has_pvh_note(elf_bytes: bytes) -> bool:
    """True if the ELF has a "Xen" note of type XEN_ELFNOTE_PHYS32_ENTRY (what qemu's PVH loader needs).

    Notes are parsed by hand (Elf64_Nhdr: u32 n_namesz, n_descsz, n_type; name and desc each padded to
    4 bytes) because pyelftools renames some Xen note types after unrelated GNU ones.
    """
    elf = ELFFile(io.BytesIO(elf_bytes))
    for segment in elf.iter_segments():
        if segment["p_type"] != "PT_NOTE":
            continue
        data, pos = segment.data(), 0
        while pos + 12 <= len(data):
            namesz, descsz, n_type = struct.unpack_from("<III", data, pos)
            name = data[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and n_type == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + _align4(namesz) + _align4(descsz)
    return False


def extract_vmlinux(vmlinuz: Path) -> bytes:
    """Return the uncompressed ELF vmlinux inside *vmlinuz* (a bzImage).

    Raises KernelImageError naming the file if the payload is unknown, fails to decompress, is not an ELF,
    or has no PVH note (then qemu -M microvm cannot boot it without the decompressor).
    """
    image = vmlinuz.read_bytes()
    payload = find_payload(image)
    decompress = next(d for fmt, _, d in _FORMATS if fmt == payload.fmt)
    try:
        elf = decompress(image[payload.offset : payload.offset + payload.length])
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as err:
        raise KernelImageError(f"{vmlinuz}: {payload.fmt} payload at {payload.offset:#x}: {err}") from err
    if not elf.startswith(b"\x7fELF"):
        raise KernelImageError(f"{vmlinuz}: {payload.fmt} payload at {payload.offset:#x} is not an ELF")
    if not has_pvh_note(elf):
        raise KernelImageError(f"{vmlinuz}: vmlinux has no PVH note (CONFIG_PVH unset): microvm cannot boot it")
    return elf
