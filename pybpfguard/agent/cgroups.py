"""cgroup v2 id -> path, from a cache of the cgroup2 tree that is rescanned on a miss.

The cgroup id the kernel reports (``bpf_get_current_cgroup_id``) is the inode number of the cgroup's
directory in cgroupfs (kernfs node id). The mount point is read from /proc/self/mountinfo, never
assumed (hosts mount cgroup2 at /sys/fs/cgroup or, in the hybrid layout, /sys/fs/cgroup/unified).
Paths are absolute, including the mount point (docs/events.md ``cgroup_path``); a cgroup that is gone
gives ``""``. Each path is kept as ``(text, b64)`` under the non-UTF-8 rule, computed once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from msgspec import UNSET, UnsetType

from pybpfguard.agent.events.text import text_b64
from pybpfguard.agent.mountinfo import read_mountinfo

CgroupPath = tuple[str, str | UnsetType]
GONE: CgroupPath = ("", UNSET)


class NoCgroup2Error(RuntimeError):
    """No cgroup2 file system is mounted (``.mountinfo`` is the file that was read)."""

    def __init__(self, mountinfo: str) -> None:
        super().__init__(f"{mountinfo}: no cgroup2 mount")
        self.mountinfo = mountinfo


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> bytes:
    """The mount point of the first cgroup2 mount listed in *mountinfo*, as bytes (unescaped).

    Line format: proc(5), ``mount_point`` is field 5 and the fs type follows the `` - `` separator.
    Raises :class:`NoCgroup2Error` if there is none.
    """
    for mount in read_mountinfo(mountinfo):
        if mount.fstype == b"cgroup2":
            return mount.mount_point
    raise NoCgroup2Error(mountinfo)


class CgroupCache:
    """Maps cgid to :data:`CgroupPath`; a miss rescans the tree, at most once per *min_rescan_s*.

    Between rescans a missing id answers :data:`GONE` and is remembered as missing, so a storm of
    events from a deleted cgroup costs one tree walk per interval, not one per event. *clock* returns
    seconds (monotonic); it is a parameter so the rate limit can be tested.
    """

    def __init__(self, mount: bytes | None = None, *, min_rescan_s: float = 0.05,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.mount = cgroup2_mount() if mount is None else mount
        self.min_rescan_s = min_rescan_s
        self._clock = clock
        self._paths: dict[int, CgroupPath] = {}
        self._last_scan = -float("inf")
        self.rescans = 0

    def get(self, cgid: int) -> CgroupPath:
        """The path of *cgid* as ``(text, b64)``; :data:`GONE` when no such cgroup exists."""
        hit = self._paths.get(cgid)
        if hit is not None:
            return hit
        now = self._clock()
        if now - self._last_scan >= self.min_rescan_s:
            self._last_scan = now
            self.rescan()
            hit = self._paths.get(cgid)
            if hit is not None:
                return hit
        return GONE

    def rescan(self) -> None:
        """Walk the whole cgroup2 tree and replace the cache (entries of deleted cgroups go away)."""
        paths: dict[int, CgroupPath] = {}
        stack = [self.mount]
        root_ino = os.stat(self.mount).st_ino
        paths[root_ino] = text_b64(self.mount)
        while stack:
            top = stack.pop()
            try:
                it = os.scandir(top)
            except FileNotFoundError:
                continue  # removed while we walked: it is gone, which is what we would record
            with it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        # kernfs readdir reports the node id as d_ino, which is the cgroup id
                        paths[entry.inode()] = text_b64(entry.path)
                        stack.append(entry.path)
        self._paths = paths
        self.rescans += 1
