"""Which kinds of file each enforcement mechanism can deny an open of, decided by asking the kernel.

BPF LSM's ``file_open`` hook runs for every open, whatever the file type. fanotify permission events are
another matter: the kernel may not raise them for FIFOs and device nodes (Linux 6.14 and later mark such
files ``FMODE_NONOTIFY_PERM`` in ``file_set_fsnotify_mode``, fs/file_table.c; earlier kernels raise
them). So the answer is probed once per process: a FIFO in a private temporary directory is marked and
opened, and either the permission event arrives or the open completes without one. Device nodes and
sockets are taken to behave as FIFOs do (the same kernel check covers every type but regular files and
directories). A rule on a file the mechanism cannot gate is refused by ``block add``, and reported as not
enforced by the daemon, never counted as enforced.
"""

from __future__ import annotations

import functools
import os
import select
import stat
import tempfile
import threading
import time

__all__ = ["fanotify_gates", "type_name", "unenforceable_reason"]

_PROBE_TIMEOUT_S = 2.0


def type_name(mode: int) -> str:
    """A reader's name for the file type in *mode* (``st_mode``)."""
    for test, name in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISLNK, "symlink")):
        if test(mode):
            return name
    return f"file of type {stat.S_IFMT(mode):o}"


@functools.cache
def _fanotify_gates_special_files() -> bool:
    """Mark a private FIFO for FAN_OPEN_PERM and open it: True when the kernel asked us first."""
    from pybpfguard.agent.fanotify import FanotifyError, FanotifyGroup, MarkFlag, Mask, Response
    from pybpfguard.agent.file_guard import EVENT_F_FLAGS, INIT_FLAGS

    with tempfile.TemporaryDirectory(prefix="pybpfguard-fifo-probe-") as d:
        fifo = os.path.join(d, "probe")
        os.mkfifo(fifo, 0o600)
        try:
            group = FanotifyGroup(INIT_FLAGS, EVENT_F_FLAGS)
        except FanotifyError:
            return False
        try:
            group.mark(MarkFlag.FAN_MARK_ADD | MarkFlag.FAN_MARK_INODE, Mask.FAN_OPEN_PERM, os.fsencode(fifo))
            opener = threading.Thread(target=lambda: os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)),
                                      daemon=True)
            opener.start()
            poller = select.poll()
            poller.register(group.fileno(), select.POLLIN)
            deadline = time.monotonic() + _PROBE_TIMEOUT_S
            while time.monotonic() < deadline:
                done = not opener.is_alive()  # read before polling: an open that finished raised no event
                if poller.poll(20):
                    for ev in group.read():
                        if ev.fd >= 0:
                            group.respond(ev.fd, Response.FAN_ALLOW)
                            os.close(ev.fd)
                    return True
                if done:
                    return False
            return False  # no answer either way: not known to be enforced
        except FanotifyError:
            return False
        finally:
            group.close()


def fanotify_gates(mode: int) -> bool:
    """Whether a fanotify permission mark makes an open of a file of this type wait for the answer."""
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode) or _fanotify_gates_special_files()


def unenforceable_reason(mode: int, *, bpf_lsm: bool) -> str | None:
    """Why a deny rule on a file of type *mode* cannot be enforced by the mechanism at hand (BPF LSM when
    *bpf_lsm*, else fanotify), or None when it can."""
    if bpf_lsm or fanotify_gates(mode):
        return None
    return (f"a {type_name(mode)} cannot be denied here: fanotify, this host's file enforcement, raises no "
            "permission event when one is opened (only BPF LSM could deny it, and it is not in use)")
