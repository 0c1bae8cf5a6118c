"""/proc/self/mountinfo, parsed: one :class:`MountEntry` per line (format: proc(5), "/proc/pid/mountinfo")."""

from __future__ import annotations

import re
from dataclasses import dataclass

_OCTAL = re.compile(rb"\\([0-7]{3})")  # mountinfo escapes space, tab, newline and backslash as \ooo


@dataclass(frozen=True, slots=True)
class MountEntry:
    """One mount: ``mount_id`` (field 1, the id name_to_handle_at(2) reports), ``dev`` (field 3, the
    superblock's device in kernel encoding ``major << 20 | minor``), ``mount_point`` (field 5, unescaped
    bytes, relative to the reading process's root) and ``fstype`` (first field after `` - ``)."""

    mount_id: int
    dev: int
    mount_point: bytes
    fstype: bytes


def _unescape(field: bytes) -> bytes:
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field)


def read_mountinfo(mountinfo: str = "/proc/self/mountinfo") -> list[MountEntry]:
    """Every mount listed in *mountinfo*, in file order. Raises OSError when it cannot be read."""
    out = []
    with open(mountinfo, "rb") as f:
        for line in f:
            left, _, right = line.partition(b" - ")
            fields = left.split(b" ")
            if len(fields) < 5:
                continue  # not a mount line (never written by the kernel)
            major, _, minor = fields[2].partition(b":")
            out.append(MountEntry(int(fields[0]), int(major) << 20 | int(minor), _unescape(fields[4]),
                                  right.split(b" ", 1)[0]))
    return out
