"""One daemon per pin root: an flock'd lock file, and a Unix socket the CLI uses to ask it to re-sync.

Rules live in pinned maps, so a CLI process edits them directly. Where enforcement also needs user-space
state (fanotify marks on exactly the denied inodes), the CLI then sends ``SYNC`` and waits for ``OK``:
when ``block add`` returns, the running daemon already enforces the new rule. Both files live in
``/run/pybpfguard/`` under a name derived from the pin root.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import time
from pathlib import Path

from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.trust import require_private_dir

RUN_DIR = Path("/run/pybpfguard")


class AlreadyRunning(AgentError, RuntimeError):
    """Another daemon holds the lock for this pin root."""


def _stem(pin_root: Path) -> str:
    return hashlib.sha256(os.fsencode(os.path.abspath(pin_root))).hexdigest()[:16]


def lock_path(pin_root: Path) -> Path:
    return RUN_DIR / f"{_stem(pin_root)}.lock"


def socket_path(pin_root: Path) -> Path:
    return RUN_DIR / f"{_stem(pin_root)}.sock"


def runtime_path(pin_root: Path) -> Path:
    return RUN_DIR / f"{_stem(pin_root)}.runtime.json"


def lock_holder(pin_root: Path) -> int | None:
    """The pid of the daemon holding the lock of *pin_root*, or None when no daemon holds it.

    The probe takes a shared, non-blocking flock for an instant; a daemon starting at that very moment
    retries its exclusive lock (see :class:`InstanceLock`), so probing never makes a start fail."""
    try:
        fd = os.open(lock_path(pin_root), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        return None
    finally:
        os.close(fd)


def _flock_retrying(fd: int, attempts: int = 5, pause_s: float = 0.02) -> None:
    """LOCK_EX|LOCK_NB, retried briefly: a `health` probe holds a shared lock for an instant."""
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == attempts - 1:
                raise
            time.sleep(pause_s)


class InstanceLock:
    """Holds ``flock(LOCK_EX)`` for the daemon's lifetime; the file records the holder's pid."""

    def __init__(self, pin_root: Path) -> None:
        require_private_dir(RUN_DIR)
        self.path = lock_path(pin_root)
        while True:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                _flock_retrying(self._fd)
            except BlockingIOError:
                holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(self._fd)
                raise AlreadyRunning(
                    f"another pybpfguard daemon (pid {holder}) is running on pin root {pin_root}; stop it first"
                ) from None
            try:  # a closing daemon unlinks the file: a lock on that orphan would not exclude anyone
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(self._fd)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def close(self) -> None:
        """Remove the lock file, then release it (a waiter re-checks the inode, see __init__)."""
        if self._fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = -1


class SyncServer:
    """The daemon's end: a non-blocking listening socket; :meth:`serve` answers pending requests."""

    def __init__(self, pin_root: Path) -> None:
        require_private_dir(RUN_DIR)
        self.path = socket_path(pin_root)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        self.sock.bind(os.fspath(self.path))
        os.chmod(self.path, 0o600)
        self.sock.listen(16)

    def fileno(self) -> int:
        return self.sock.fileno()

    def serve(self, on_sync: object) -> None:
        """Accept every waiting client; for each ``SYNC`` call *on_sync()* then answer ``OK`` (or ``ERR``)."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            with conn:
                conn.settimeout(1.0)
                try:
                    request = conn.recv(64)
                    if request.strip() == b"SYNC":
                        on_sync()  # type: ignore[operator]
                        conn.sendall(b"OK\n")
                    else:
                        conn.sendall(b"ERR unknown request\n")
                except Exception as err:  # a failed resync is the editor's error; it never ends the daemon
                    with contextlib.suppress(OSError):
                        conn.sendall(f"ERR {err}\n".encode())

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def request_sync(pin_root: Path, timeout_s: float = 5.0) -> bool:
    """Ask the daemon on *pin_root* to re-sync; True when it answered OK, False when none is running.

    Raises RuntimeError when a daemon is running but failed to apply the change."""
    path = socket_path(pin_root)
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(os.fspath(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False  # a stale socket from a daemon that died
        sock.sendall(b"SYNC\n")
        answer = sock.recv(4096).decode(errors="replace").strip()
    if answer != "OK":
        raise RuntimeError("the rule is recorded in the pinned maps and deny.db, but the running daemon could not "
                           f"apply it ({answer or 'no answer'}); see its log, or restart it")
    return True
