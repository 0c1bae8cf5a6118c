"""Path rules: validation, canonicalization and the inode key a path denies (docs/cli.md).

A rule path is bytes at the edge of the kernel (file names need not be UTF-8); ``str`` input is encoded
with ``os.fsencode`` (surrogateescape). ``dev`` in every key uses the kernel encoding
``major << 20 | minor`` (include/linux/kdev_t.h, MINORBITS = 20), not glibc's ``st_dev``.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from pybpfguard.agent.errors import AgentError

__all__ = [
    "BLOCK_ADD_MAX_BYTES",
    "DENY_PATH_MAX_BYTES",
    "GLOB_CHARS",
    "InodeKey",
    "PathRuleError",
    "ResolvedPath",
    "check_rule_path",
    "inode_key",
    "kernel_dev",
    "resolve_rule_path",
]

BLOCK_ADD_MAX_BYTES = 255  # `block add`: "< 256 bytes" (docs/cli.md)
DENY_PATH_MAX_BYTES = 4095  # [deny_path]: "up to 4095 bytes" (docs/cli.md), PATH_MAX 4096 with the NUL
GLOB_CHARS = b"*?["
MINORBITS = 20  # include/linux/kdev_t.h

InodeKey = tuple[int, int]
"""``(ino, dev)``: the inode number and the kernel-encoded device of a file, as in the ``deny_inode`` key
``{u64 ino, u32 dev, u32 pad}`` (docs/maps.md)."""


class PathRuleError(AgentError, ValueError):
    """A path rule was refused: ``.path`` (bytes, as given), ``.reason`` (text), ``.errno`` when the
    filesystem refused it. ``str()`` reads ``<path>: <reason>``."""

    def __init__(self, path: bytes, reason: str, err: int | None = None) -> None:
        super().__init__(f"{os.fsdecode(path)}: {reason}")
        self.path = path
        self.reason = reason
        self.errno = err

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (PathRuleError, (self.path, self.reason, self.errno))


@dataclass(frozen=True, slots=True)
class ResolvedPath:
    """A validated rule path: ``raw`` as given, ``canonical`` (absolute, no symlinks, ``.`` or ``..``),
    ``ino``, ``dev`` (kernel encoding) and ``mode`` (``st_mode``) of the file it names now."""

    raw: bytes
    canonical: bytes
    ino: int
    dev: int
    mode: int

    @property
    def key(self) -> InodeKey:
        return (self.ino, self.dev)


def kernel_dev(st_dev: int) -> int:
    """glibc ``st_dev`` -> the kernel's ``s_dev`` encoding ``major << 20 | minor`` (a u32)."""
    return (os.major(st_dev) << MINORBITS) | os.minor(st_dev)


def inode_key(st: os.stat_result) -> InodeKey:
    """The ``(ino, dev)`` key of a stat result, dev in kernel encoding."""
    return (st.st_ino, kernel_dev(st.st_dev))


def check_rule_path(path: str | bytes, max_bytes: int = DENY_PATH_MAX_BYTES) -> bytes:
    """Syntax checks only (no filesystem access): absolute, no NUL, no glob character, at most
    *max_bytes* bytes. Returns the path as bytes. Raises PathRuleError naming the path."""
    raw = os.fsencode(path)
    if not raw:
        raise PathRuleError(raw, "empty path")
    if b"\0" in raw:
        raise PathRuleError(raw, "path contains a NUL byte")
    if not raw.startswith(b"/"):
        raise PathRuleError(raw, "relative path; rules need an absolute path")
    if any(c in raw for c in GLOB_CHARS):
        raise PathRuleError(raw, "glob characters are not supported in deny_path; list each file or use deny_inode")
    if len(raw) > max_bytes:
        raise PathRuleError(raw, f"path is {len(raw)} bytes, limit {max_bytes}")
    return raw


def _canonical_stat(raw: bytes) -> tuple[bytes, os.stat_result]:
    """The canonical path of the file *raw* names and its stat, of the same inode: the kernel's own name
    of an ``O_PATH`` descriptor (one lookup, where ``realpath`` takes an ``lstat`` per component), else,
    without /proc, ``realpath`` and ``stat``."""
    fd = os.open(raw, os.O_PATH | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        try:
            canonical = os.readlink(b"/proc/self/fd/%d" % fd)
        except OSError:
            return os.path.realpath(raw, strict=True), st
    finally:
        os.close(fd)
    if not canonical.startswith(b"/"):  # not a path in this mount namespace (an anonymous or detached mount)
        return os.path.realpath(raw, strict=True), st
    return canonical, st


def resolve_rule_path(path: str | bytes, max_bytes: int = DENY_PATH_MAX_BYTES) -> ResolvedPath:
    """:func:`check_rule_path`, then canonicalize (every symlink resolved; the file must exist) and
    ``stat`` it. The canonical path is checked against *max_bytes* too. Raises PathRuleError naming the
    path (with ``.errno`` ENOENT, EACCES, ENOTDIR, ELOOP, ENAMETOOLONG from the filesystem)."""
    raw = check_rule_path(path, max_bytes)
    try:
        canonical, st = _canonical_stat(raw)
    except OSError as err:
        code = err.errno or errno.EIO
        raise PathRuleError(raw, f"cannot resolve: {os.strerror(code)}", code) from err
    if len(canonical) > max_bytes:
        raise PathRuleError(raw, f"canonical path {os.fsdecode(canonical)} is {len(canonical)} bytes, "
                            f"limit {max_bytes}")
    return ResolvedPath(raw, canonical, st.st_ino, kernel_dev(st.st_dev), st.st_mode)
