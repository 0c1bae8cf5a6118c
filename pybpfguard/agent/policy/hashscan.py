"""Binary-hash scan for ``[deny_binary_hash]`` / ``[allow_binary_hash]`` / ``[scan_paths]`` (docs/policy.md).

:func:`scan` hashes (SHA-256) every regular file under the executable directories of :data:`DEFAULT_ROOTS`
and the policy's extra roots, once per inode, and returns the inode keys ``(ino, dev)`` (dev in kernel
encoding, :func:`pybpfguard.agent.paths.kernel_dev`) whose content has one of the wanted digests, with the
path each was found by (the path the fanotify tier marks the inode through).

Walk: symlinks are never followed (neither to files nor to directories), only regular files are opened, so a
FIFO, socket or device node in a scanned tree is never opened and cannot block the scan. Hard links are
hashed once (the first path in walk order, names sorted, wins). Roots that resolve to the same directory (``/bin`` ->
``usr/bin``), or to a directory under another root, are walked once. A missing root is skipped and listed
in :attr:`ScanResult.missing_roots`; whether that is an error is the caller's decision.

Parallelism: a pool of threads, one per usable CPU. Both the read (``FileIO.readinto``) and the SHA-256
update of a large buffer (``hashlib`` releases the GIL above 2 KiB) run without the GIL. Measured on the
2-vCPU host against a process pool hashing the same files, alternated round by round (docs/benchmarks.md,
"Issue 9: binary-hash scan"): 2 threads and 2 processes are equal within the noise (1,800 to 5,000 files/s
of /usr/bin depending on the host's load, 2 of either up to 1.8x one thread), 4 of either no better.
Threads win the tie: no interpreter start-up, no pickling of results, and the test seam below works.

Trust: each file is opened ``O_NOFOLLOW | O_NONBLOCK`` (a name swapped for a symlink fails, one swapped for
a FIFO cannot block) and must still be the inode the walk listed; its ``fstat`` before hashing and after,
and an ``lstat`` of its path after, must agree on size, mtime and inode. A file that changed is reported
(:attr:`Skip.CHANGED`) and its digest is not used. mtime has the filesystem's timestamp granularity: a
same-size rewrite within one tick is not seen (the policy is applied from a quiescent tree).
"""

from __future__ import annotations

import enum
import errno
import hashlib
import os
import stat
import sys
import time
from collections.abc import Iterator, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pybpfguard.agent.paths import InodeKey, kernel_dev

__all__ = ["DEFAULT_ROOTS", "DIGEST_BYTES", "ScanResult", "Skip", "Skipped", "hash_file", "scan", "scan_roots",
           "scan_tree"]

#: The directories every scan covers (AegisBPF's list), before the policy's ``[scan_paths]``.
DEFAULT_ROOTS: tuple[bytes, ...] = (b"/bin", b"/sbin", b"/usr/bin", b"/usr/sbin", b"/usr/local/bin",
                                    b"/usr/local/sbin", b"/usr/libexec")
DIGEST_BYTES = 32  # SHA-256
PROGRESS_DELAY_S = 1.0  # a scan shorter than this shows no bar
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class Skip(enum.Enum):
    """Why a file contributed no digest."""

    UNREADABLE = "unreadable"  # listing, open or read failed (detail: the error)
    CHANGED = "changed"  # size, mtime or inode differ between the listing, before and after hashing
    NOT_REGULAR = "not_regular"  # the name listed as a regular file is something else at open


@dataclass(frozen=True, slots=True)
class Skipped:
    """A path the scan could not use: ``path`` (bytes), ``kind`` and a human ``detail``."""

    path: bytes
    kind: Skip
    detail: str


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What :func:`scan` found.

    ``matches``: every wanted digest (32 bytes) -> ``{(ino, dev): path}`` of the inodes whose content has
    it (empty when none); ``files``: inodes hashed; ``bytes``: their total size; ``skipped``: every file or
    directory not used, with why; ``seconds``: wall time of the whole scan; ``roots``: the directories
    walked (canonical); ``missing_roots``: roots given that do not exist or are not directories."""

    matches: dict[bytes, dict[InodeKey, bytes]]
    files: int
    bytes: int
    skipped: tuple[Skipped, ...]
    seconds: float
    roots: tuple[bytes, ...]
    missing_roots: tuple[bytes, ...] = field(default=())

    @property
    def unreadable(self) -> tuple[Skipped, ...]:
        return tuple(s for s in self.skipped if s.kind is not Skip.CHANGED)

    @property
    def changed(self) -> tuple[Skipped, ...]:
        return tuple(s for s in self.skipped if s.kind is Skip.CHANGED)

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds if self.seconds > 0 else 0.0


def scan_roots(roots: Sequence[bytes]) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """``(directories to walk, missing roots)`` for *roots*, each canonicalized; a root equal to or under
    another is dropped (walked once); order kept. Never raises."""
    real: list[bytes] = []
    missing: list[bytes] = []
    for root in roots:
        try:
            canonical = os.path.realpath(root, strict=True)
            is_dir = stat.S_ISDIR(os.stat(canonical).st_mode)
        except OSError:
            is_dir = False
        if not is_dir:
            missing.append(root)
        elif canonical not in real:
            real.append(canonical)
    kept = [r for r in real if not any(r != o and r.startswith(o.rstrip(b"/") + b"/") for o in real)]
    return tuple(kept), tuple(missing)


@dataclass(frozen=True, slots=True)
class _Listed:
    path: bytes
    key: InodeKey
    size: int
    mtime_ns: int


def _walk(roots: Sequence[bytes], skipped: list[Skipped]) -> Iterator[_Listed]:
    """Every regular file under *roots* (no symlink followed), once per inode; listing errors to *skipped*."""
    seen: set[InodeKey] = set()
    stack = list(reversed(roots))
    while stack:
        top = stack.pop()
        try:
            with os.scandir(top) as it:
                entries = sorted(it, key=lambda e: e.name)  # a stable walk order: the same path wins each time
        except OSError as err:
            skipped.append(Skipped(top, Skip.UNREADABLE, f"cannot list: {os.strerror(err.errno or errno.EIO)}"))
            continue
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue  # symlink, FIFO, socket, device: never opened
                st = entry.stat(follow_symlinks=False)
            except OSError as err:
                skipped.append(Skipped(entry.path, Skip.UNREADABLE, os.strerror(err.errno or errno.EIO)))
                continue
            key = (st.st_ino, kernel_dev(st.st_dev))
            if key in seen:
                continue  # another hard link of an inode already listed
            seen.add(key)
            yield _Listed(entry.path, key, st.st_size, st.st_mtime_ns)
        stack.extend(reversed(subdirs))


def _file_digest(f: object) -> bytes:
    """SHA-256 of an open binary file (a seam: tests replace it to change a file while it is hashed)."""
    return hashlib.file_digest(f, "sha256").digest()  # type: ignore[arg-type]


def hash_file(path: bytes, key: InodeKey | None = None, size: int | None = None,
              mtime_ns: int | None = None) -> tuple[bytes, int] | Skipped:
    """``(sha256 digest, size)`` of the regular file at *path*, or why not (:class:`Skipped`).

    When the walk's *key*, *size* and *mtime_ns* are given, the file opened must still match them. Not
    following a final symlink and never blocking (``O_NOFOLLOW | O_NONBLOCK``)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return Skipped(path, Skip.NOT_REGULAR, "replaced by a symlink after listing")
        return Skipped(path, Skip.UNREADABLE, os.strerror(err.errno or errno.EIO))
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            return Skipped(path, Skip.NOT_REGULAR, "not a regular file at open")
        listed = (key, size, mtime_ns)
        if key is not None and listed != ((before.st_ino, kernel_dev(before.st_dev)), before.st_size,
                                          before.st_mtime_ns):
            return Skipped(path, Skip.CHANGED, "changed between listing and open")
        with open(fd, "rb", buffering=0, closefd=False) as f:
            digest = _file_digest(f)
        after = os.fstat(fd)
        now = os.lstat(path)
    except OSError as err:
        return Skipped(path, Skip.UNREADABLE, os.strerror(err.errno or errno.EIO))
    finally:
        os.close(fd)
    if ((before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)
            or (now.st_ino, now.st_dev) != (before.st_ino, before.st_dev)):
        return Skipped(path, Skip.CHANGED, "size, mtime or inode changed while hashing")
    return digest, before.st_size


def _progress_bar(total_bytes: int, progress: bool | None):  # type: ignore[no-untyped-def]
    """A tqdm bar on stderr: *progress* None shows it only on a terminal and only after
    :data:`PROGRESS_DELAY_S`; True always (at once); False never."""
    from tqdm import tqdm  # imported only by the scan (about 30 ms)

    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="hashing binaries",
                file=sys.stderr, delay=PROGRESS_DELAY_S if progress is None else 0.0, disable=not show,
                leave=False)


def default_workers() -> int:
    """Worker threads: the CPUs this process may run on (hashing is CPU-bound once the file is cached)."""
    return max(1, len(os.sched_getaffinity(0)))


def scan(digests: Set[bytes], extra_roots: Sequence[bytes] = (), *, progress: bool | None = None,
         workers: int | None = None) -> ScanResult:
    """Hash every regular file under :data:`DEFAULT_ROOTS` and *extra_roots* (absolute directories, bytes:
    ``[scan_paths]``) and return, for each wanted SHA-256 *digest* (32 bytes each), the inodes whose content
    has it. *progress* and *workers*: :func:`scan_tree`."""
    return scan_tree((*DEFAULT_ROOTS, *extra_roots), digests, progress=progress, workers=workers)


def scan_tree(roots: Sequence[bytes], digests: Set[bytes], *, progress: bool | None = None,
              workers: int | None = None) -> ScanResult:
    """:func:`scan` of exactly *roots* (no default root added).

    *progress*: None shows a tqdm bar on stderr when stderr is a terminal and the scan takes more than a
    second; True/False force it on/off. *workers*: hashing threads (default: the usable CPUs).
    Never raises for a file or root it cannot read: they are in ``skipped`` / ``missing_roots``.
    Raises ValueError for a digest that is not 32 bytes."""
    for d in digests:
        if len(d) != DIGEST_BYTES:
            raise ValueError(f"a SHA-256 digest is {DIGEST_BYTES} bytes, got {len(d)}")
    start = time.perf_counter()
    walked, missing = scan_roots(roots)
    skipped: list[Skipped] = []
    listed = list(_walk(walked, skipped))
    matches: dict[bytes, dict[InodeKey, bytes]] = {d: {} for d in digests}
    files = total = 0
    n = workers if workers is not None else default_workers()
    with _progress_bar(sum(f.size for f in listed), progress) as bar, \
            ThreadPoolExecutor(max_workers=max(1, n), thread_name_prefix="pybpfguard-hash") as pool:
        done = pool.map(lambda f: hash_file(f.path, f.key, f.size, f.mtime_ns), listed)
        for item, out in zip(listed, done, strict=True):
            bar.update(item.size)
            if isinstance(out, Skipped):
                skipped.append(out)
                continue
            digest, size = out
            files += 1
            total += size
            hit = matches.get(digest)
            if hit is not None:
                hit[item.key] = item.path
    return ScanResult(matches, files, total, tuple(skipped), time.perf_counter() - start, walked, missing)
