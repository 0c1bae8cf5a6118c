"""State files in the state directory: ``deny.db`` (docs/maps.md).

``deny.db`` holds one rule per line, ``<dev> <ino> <path>``: ``dev`` in kernel encoding, decimal; the path
is the rest of the line (spaces allowed) with ``\\`` written as ``\\\\`` and newline as ``\\n``; every
other byte, including non-UTF-8 bytes, is written as is. Rewrites are atomic (temporary file in the same
directory, fsync, rename), so a reader sees the old or the new file, never a mix.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pybpfguard.agent.config import state_file
from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.paths import InodeKey
from pybpfguard.agent.trust import require_private_dir, require_private_file

__all__ = [
    "DenyDb",
    "DenyDbEntry",
    "StateFileError",
    "escape_path",
    "format_deny_db",
    "parse_deny_db",
    "unescape_path",
]



class StateFileError(AgentError, ValueError):
    """A state file is malformed: ``.path``, ``.line`` (1-based) and ``.reason``; prints ``file:line: reason``."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (StateFileError, (self.path, self.line, self.reason))


def escape_path(path: bytes) -> bytes:
    """``\\`` -> ``\\\\``, newline -> ``\\n``; nothing else changes."""
    return path.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")


def unescape_path(text: bytes) -> bytes:
    """Inverse of :func:`escape_path`. Raises ValueError on ``\\`` followed by anything but ``\\`` or ``n``."""
    if b"\\" not in text:
        return text
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        j = text.find(b"\\", i)
        if j < 0:
            out += text[i:]
            break
        out += text[i:j]
        nxt = text[j + 1 : j + 2]
        if nxt == b"\\":
            out += b"\\"
        elif nxt == b"n":
            out += b"\n"
        else:
            raise ValueError(f"bad escape {text[j:j + 2]!r} at byte {j}")
        i = j + 2
    return bytes(out)


@dataclass(frozen=True, slots=True)
class DenyDbEntry:
    """One deny.db line: ``dev`` (kernel encoding), ``ino``, ``path`` (raw bytes)."""

    dev: int
    ino: int
    path: bytes

    @property
    def key(self) -> InodeKey:
        return (self.ino, self.dev)


def format_deny_db(entries: Iterable[DenyDbEntry]) -> bytes:
    """The file content for *entries*, one line each, in the given order."""
    return b"".join(b"%d %d %s\n" % (e.dev, e.ino, escape_path(e.path)) for e in entries)


def parse_deny_db(data: bytes, name: str = "deny.db", errors: list[StateFileError] | None = None
                  ) -> list[DenyDbEntry]:
    """Parse deny.db content. Blank lines are skipped. Raises StateFileError naming *name* and the line; with
    *errors*, a bad line is appended there and skipped instead (what the daemon enforces from a file a hand
    edit broke: every good line)."""
    entries = []
    for lineno, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            entries.append(_parse_line(line, name, lineno))
        except StateFileError as err:
            if errors is None:
                raise
            errors.append(err)
    return entries


def _parse_line(line: bytes, name: str, lineno: int) -> DenyDbEntry:
    parts = line.split(b" ", 2)
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise StateFileError(name, lineno, f"expected '<dev> <ino> <path>', found {line[:80]!r}")
    dev, ino = int(parts[0]), int(parts[1])
    if dev >= 1 << 32 or ino >= 1 << 64:
        raise StateFileError(name, lineno, f"dev {dev} or ino {ino} out of range (u32, u64)")
    try:
        path = unescape_path(parts[2])
    except ValueError as err:
        raise StateFileError(name, lineno, str(err)) from err
    return DenyDbEntry(dev, ino, path)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace *path* with *data*, so a reader sees the old file or the new one, never a part
    (:func:`replace_file`). A missing directory is created root-only (0700); one another user could change
    is refused (UntrustedPathError). Raises OSError."""
    require_private_dir(path.parent)
    replace_file(path, data, mode)


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace *path* with *data* in a directory that exists, with no ownership check (for files the
    operator names, such as ``policy lint --fix --out``): a private temporary file (``mkstemp``:
    unpredictable name, O_EXCL) in the same directory, fsync, rename, fsync the directory. Raises OSError."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass  # already renamed or never created
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class DenyDb:
    """The deny.db file at *path* (default :func:`state_file` ``deny.db``).

    Also a path source for the file guard: :meth:`deny_paths` gives ``{(ino, dev): path}``.
    Concurrent writers must serialise themselves (the CLI holds the control lock); each write is atomic.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else state_file("deny.db")

    def read(self, errors: list[StateFileError] | None = None) -> list[DenyDbEntry]:
        """All entries, in file order; [] when the file does not exist. Raises StateFileError, or with
        *errors* collects the bad lines there and returns the good ones."""
        try:
            require_private_dir(self.path.parent, create=False)
            require_private_file(self.path)
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return parse_deny_db(data, str(self.path), errors)

    def write(self, entries: Iterable[DenyDbEntry]) -> None:
        """Atomically replace the file with *entries*."""
        write_atomic(self.path, format_deny_db(entries))

    def add(self, entry: DenyDbEntry) -> bool:
        """Add *entry* unless the same (key, path) is recorded; returns whether the file changed."""
        entries = self.read()
        if entry in entries:
            return False
        self.write([*entries, entry])
        return True

    def remove_key(self, key: InodeKey) -> int:
        """Remove every line for inode *key*; returns how many were removed."""
        entries = self.read()
        kept = [e for e in entries if e.key != key]
        if len(kept) != len(entries):
            self.write(kept)
        return len(entries) - len(kept)

    def clear(self) -> None:
        """Remove the file (``block clear``)."""
        self.path.unlink(missing_ok=True)

    def deny_paths(self, errors: list[StateFileError] | None = None) -> dict[InodeKey, bytes]:
        """``{(ino, dev): path}``; for a key recorded more than once, the first line wins. *errors* as for
        :meth:`read`."""
        out: dict[InodeKey, bytes] = {}
        for e in self.read(errors):
            out.setdefault(e.key, e.path)
        return out
