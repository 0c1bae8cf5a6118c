"""``deny.handles``: a file handle for each denied inode, so a rule is re-found after its file was renamed.

A rule is on an inode; deny.db records the path it was added by (a compatibility format that stays
``<dev> <ino> <path>``). When that path is gone or names another inode (the file was renamed, or
hard-linked elsewhere and the old name unlinked), the daemon reopens the inode from the handle taken at
``block add`` (:mod:`pybpfguard.agent.fhandle`) and marks it through the new fd.

Format, beside deny.db (``deny.db`` -> ``deny.handles``), one line per inode:
``<dev> <ino> <handle_type> <handle hex> <mount point>``; ``dev`` in kernel encoding, the mount point
(where the handle's filesystem was mounted for the process that took it) is the rest of the line, escaped
as deny.db paths are. Rewrites are atomic (:func:`pybpfguard.agent.statefiles.write_atomic`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.fhandle import FileHandle, name_to_handle_at, open_by_handle_at
from pybpfguard.agent.mountinfo import read_mountinfo
from pybpfguard.agent.paths import InodeKey, inode_key
from pybpfguard.agent.statefiles import StateFileError, escape_path, unescape_path, write_atomic

#: ``FILEID_INO32_GEN`` (include/linux/exportfs.h): ``{u32 ino; u32 gen}``.
FILEID_INO32_GEN = 1
_BY_HANDLE = "file handle"
_BY_NUMBER = "inode by number"
_STALE_REASON = {_BY_HANDLE: "the file was deleted",
                 _BY_NUMBER: "no such inode, or its filesystem cannot find an inode by number alone"}


@dataclass(frozen=True, slots=True)
class HandleRecord:
    """One deny.handles line: the inode (``dev``, ``ino``), its ``handle`` and the ``mount_point`` to
    decode it against."""

    dev: int
    ino: int
    handle: FileHandle
    mount_point: bytes

    @property
    def key(self) -> InodeKey:
        return (self.ino, self.dev)


class HandleError(AgentError):
    """The inode could not be reopened from its handle: ``.errno``; ``str()`` is the reason for the operator."""

    def __init__(self, err: int, reason: str) -> None:
        super().__init__(reason)
        self.errno = err


def handles_path(deny_db: Path) -> Path:
    """The handle file beside *deny_db*: same directory, suffix ``.handles`` (``deny.db`` -> ``deny.handles``)."""
    return deny_db.with_suffix(".handles")


def format_handles(records: list[HandleRecord]) -> bytes:
    return b"".join(b"%d %d %d %s %s\n" % (r.dev, r.ino, r.handle.handle_type, r.handle.data.hex().encode(),
                                           escape_path(r.mount_point)) for r in records)


def parse_handles(data: bytes, name: str = "deny.handles") -> dict[InodeKey, HandleRecord]:
    """Parse the file content; the last line for an inode wins. Raises StateFileError naming the line."""
    out: dict[InodeKey, HandleRecord] = {}
    for lineno, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        parts = line.split(b" ", 4)
        try:
            if len(parts) != 5 or not parts[0].isdigit() or not parts[1].isdigit():
                raise ValueError("expected '<dev> <ino> <handle_type> <handle hex> <mount point>'")
            handle = FileHandle(int(parts[2]), bytes.fromhex(parts[3].decode("ascii")))
            record = HandleRecord(int(parts[0]), int(parts[1]), handle, unescape_path(parts[4]))
        except (ValueError, UnicodeDecodeError) as err:
            raise StateFileError(name, lineno, f"{err}; found {line[:80]!r}") from err
        out[record.key] = record
    return out


class HandleDb:
    """The deny.handles file at *path*. Writers serialise themselves as deny.db's do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[InodeKey, HandleRecord]:
        """``{(ino, dev): record}``; {} when the file does not exist. Raises StateFileError."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        return parse_handles(data, str(self.path))

    def put(self, record: HandleRecord) -> None:
        self.put_many([record])

    def put_many(self, new: Iterable[HandleRecord]) -> None:
        """Record every handle of *new* (one rewrite of the file, whatever their number)."""
        records = self.read()
        changed = False
        for record in new:
            if records.get(record.key) != record:
                records[record.key] = record
                changed = True
        if changed:
            write_atomic(self.path, format_handles(list(records.values())))

    def replace(self, records: Iterable[HandleRecord]) -> None:
        """Make *records* the whole file (one atomic rewrite)."""
        write_atomic(self.path, format_handles(list(records)))

    def remove_keys(self, keys: set[InodeKey]) -> None:
        records = self.read()
        if keys & records.keys():
            write_atomic(self.path, format_handles([r for k, r in records.items() if k not in keys]))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def take_handle(path: bytes, key: InodeKey, mounts: Mapping[int, bytes] | None = None) -> HandleRecord:
    """The handle of the file *path* names, checked to be inode *key*, with the mount point it was found
    on. *mounts*: mount id -> mount point (:func:`mount_points`), for many calls in a row; default: read
    now. Raises OSError (EOPNOTSUPP: the filesystem has no file handles; ESTALE: *path* names another
    inode)."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if inode_key(os.fstat(fd)) != key:
            raise OSError(errno.ESTALE, f"{os.fsdecode(path)} changed while the rule was added")
        handle, mount_id = name_to_handle_at(fd)
    finally:
        os.close(fd)
    if mounts is None or mount_id not in mounts:
        mounts = mount_points()
    return HandleRecord(key[1], key[0], handle, mounts.get(mount_id, b"/"))


def mount_points() -> dict[int, bytes]:
    """Mount id -> mount point, from /proc/self/mountinfo."""
    return {m.mount_id: m.mount_point for m in read_mountinfo()}


def _mount_candidates(dev: int, first: bytes | None = None) -> list[bytes]:
    """*first* (the recorded mount point), then every mount of device *dev* (the recorded one may be gone
    or, in another mount namespace, name something else)."""
    head = [] if first is None else [first]
    with contextlib.suppress(OSError):
        return [*head, *[m.mount_point for m in read_mountinfo() if m.dev == dev and m.mount_point != first]]
    return head


def _open_on_device(dev: int, handle: FileHandle, key: InodeKey, mounts: list[bytes], what: str) -> int:
    """Decode *handle* against the first of *mounts* that is still device *dev*; the fd must be inode *key*.
    *what* names the handle in reasons. Raises HandleError."""
    last = "no mount of its filesystem is visible"
    for mount in mounts:
        try:
            # not O_PATH: open_by_handle_at looks the fd up with fdget, which skips O_PATH files (EBADF)
            mount_fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            last = f"mount point {os.fsdecode(mount)}: {os.strerror(err.errno or errno.EIO)}"
            continue
        try:
            if inode_key(os.fstat(mount_fd))[1] != dev:
                last = f"mount point {os.fsdecode(mount)} is now another filesystem"
                continue
            try:
                fd = open_by_handle_at(mount_fd, handle)
            except OSError as err:
                code = err.errno or errno.EIO
                reason = _STALE_REASON[what] if code == errno.ESTALE else os.strerror(code)
                raise HandleError(code, f"{what}: {reason}") from err
        finally:
            os.close(mount_fd)
        if inode_key(os.fstat(fd)) != key:
            os.close(fd)
            raise HandleError(errno.ESTALE, f"{what} names another inode")
        return fd
    raise HandleError(errno.ENOENT, f"{what}: {last}")


def reopen(record: HandleRecord) -> int:
    """An ``O_PATH`` fd on the inode *record* names (the caller closes it), decoded against a mount whose
    device is the rule's and checked by fstat to be that very inode. Raises HandleError with the reason
    (ESTALE: the inode is gone)."""
    return _open_on_device(record.dev, record.handle, record.key, _mount_candidates(record.dev, record.mount_point),
                           _BY_HANDLE)


def reopen_by_number(key: InodeKey) -> int:
    """An ``O_PATH`` fd on inode *key* ``(ino, dev)`` found by its number alone (a rule given as ``dev:ino``,
    with no path or handle recorded): a ``FILEID_INO32_GEN`` handle with generation 0, decoded against a
    mount of *dev* and checked by fstat to be that inode.

    Generation 0 means "any generation" to ext2/3/4 (fs/ext4/super.c ``ext4_nfs_get_inode``) and f2fs, so
    they find any live inode by number. XFS takes 0 as a real generation and tmpfs has its own handle
    format: there, and for numbers beyond 32 bits, this fails (the rule then stays unenforced and is reported).
    Needs CAP_DAC_READ_SEARCH. Raises HandleError with the reason."""
    ino, dev = key
    if not 0 < ino < 1 << 32:
        raise HandleError(errno.EOVERFLOW, f"{_BY_NUMBER}: {ino} does not fit a 32-bit file handle")
    handle = FileHandle(FILEID_INO32_GEN, struct.pack("=II", ino, 0))
    return _open_on_device(dev, handle, key, _mount_candidates(dev), _BY_NUMBER)
