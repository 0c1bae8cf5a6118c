"""The binary-hash scan (pybpfguard.agent.policy.hashscan) on a private tree of files made here: hard links
hashed once, symlinks never followed, unreadable files and directories reported, a FIFO that cannot block,
files that change while hashed reported and not trusted."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pybpfguard.agent.paths import inode_key
from pybpfguard.agent.policy import hashscan
from pybpfguard.agent.policy.hashscan import DEFAULT_ROOTS, Skip, scan, scan_roots, scan_tree

NOBODY = 65534
REPO = Path(__file__).resolve().parents[2]


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/{a, b (hard link of a), c, link-to-a (symlink), fifo, big (3 MiB), sub/deeper/d (= c's content),
    dirlink -> sub (symlink to a directory)} plus, outside the root, outside/e linked to by root/escape."""
    root = tmp_path / "root"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a").write_bytes(b"alpha")
    os.link(root / "a", root / "b")
    (root / "c").write_bytes(b"gamma")
    (root / "sub" / "deeper" / "d").write_bytes(b"gamma")
    (root / "big").write_bytes(os.urandom(3 << 20))
    (root / "link-to-a").symlink_to(root / "a")
    (root / "dirlink").symlink_to(root / "sub")
    os.mkfifo(root / "fifo")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "e").write_bytes(b"epsilon")
    (root / "escape").symlink_to(tmp_path / "outside")
    return root


def key(path: Path) -> tuple[int, int]:
    return inode_key(os.lstat(path))


def test_hard_links_hashed_once_symlinks_and_fifo_never_opened(tree: Path) -> None:
    big = (tree / "big").read_bytes()
    wanted = {sha(b"alpha"), sha(b"gamma"), sha(b"epsilon"), sha(big), sha(b"absent")}
    r = scan_tree([os.fsencode(tree)], wanted, progress=False)
    # a and b are one inode: one match, found by the first path in walk order (sorted names)
    assert r.matches[sha(b"alpha")] == {key(tree / "a"): os.fsencode(tree / "a")}
    assert set(r.matches[sha(b"gamma")]) == {key(tree / "c"), key(tree / "sub" / "deeper" / "d")}
    assert r.matches[sha(big)] == {key(tree / "big"): os.fsencode(tree / "big")}
    assert r.matches[sha(b"epsilon")] == {}  # only reachable through a symlinked directory
    assert r.matches[sha(b"absent")] == {}
    assert (r.files, r.bytes) == (4, 5 + 5 + 5 + len(big))
    assert r.skipped == () and r.missing_roots == ()
    assert r.roots == (os.fsencode(tree),) and r.seconds > 0


def test_dev_is_in_kernel_encoding(tree: Path) -> None:
    r = scan_tree([os.fsencode(tree)], {sha(b"alpha")}, progress=False)
    [(ino, dev)] = r.matches[sha(b"alpha")]
    st = os.stat(tree / "a")
    assert (ino, dev) == (st.st_ino, os.major(st.st_dev) << 20 | os.minor(st.st_dev))


def test_roots_that_are_symlinks_or_nested_are_walked_once_and_missing_ones_skipped(tree: Path,
                                                                                     tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to("root")
    roots = [os.fsencode(p) for p in (tree, alias, tree / "sub", tmp_path / "missing", tree / "a")]
    walked, missing = scan_roots(roots)
    assert walked == (os.fsencode(tree),)
    assert missing == (os.fsencode(tmp_path / "missing"), os.fsencode(tree / "a"))  # a is not a directory
    r = scan_tree(roots, {sha(b"gamma")}, progress=False)
    assert len(r.matches[sha(b"gamma")]) == 2 and r.files == 4
    assert r.missing_roots == missing


def test_scan_covers_the_default_roots_plus_the_extra_ones(tree: Path) -> None:
    walked, _ = scan_roots(DEFAULT_ROOTS)
    # /bin -> usr/bin and /sbin -> usr/sbin on merged-/usr hosts: each directory once
    assert len(set(walked)) == len(walked)
    true = os.path.realpath("/bin/true")
    r = scan({sha(Path(true).read_bytes()), sha(b"alpha")}, [os.fsencode(tree)], progress=False)
    assert inode_key(os.stat(true)) in r.matches[sha(Path(true).read_bytes())]
    assert set(r.matches[sha(b"alpha")]) == {key(tree / "a")}
    assert r.roots[-1] == os.fsencode(tree) and r.files > 4


def test_a_digest_of_the_wrong_length_is_refused(tree: Path) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        scan_tree([os.fsencode(tree)], {b"short"}, progress=False)


def while_hashing(monkeypatch: pytest.MonkeyPatch, victim: Path, change: Callable[[], None]) -> None:
    """Make the scan run *change* right after it hashed *victim* (before its after-hash checks)."""
    real = hashscan._file_digest

    def hash_then_change(f: io.FileIO) -> bytes:
        digest = real(f)
        if os.path.samefile(f"/proc/self/fd/{f.fileno()}", victim):
            change()
        return digest

    monkeypatch.setattr(hashscan, "_file_digest", hash_then_change)


def test_a_file_changed_while_hashed_is_reported_not_trusted(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tree / "c"

    def append() -> None:
        with open(victim, "ab") as w:
            w.write(b"more")

    while_hashing(monkeypatch, victim, append)
    r = scan_tree([os.fsencode(tree)], {sha(b"gamma")}, progress=False)
    assert set(r.matches[sha(b"gamma")]) == {key(tree / "sub" / "deeper" / "d")}
    [changed] = r.changed
    assert changed.path == os.fsencode(victim) and changed.kind is Skip.CHANGED
    assert r.unreadable == ()


def test_a_file_replaced_while_hashed_is_reported(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tree / "c"

    def replace() -> None:
        (tree / "new").write_bytes(b"gamma")
        os.replace(tree / "new", victim)  # same size, same content, another inode

    while_hashing(monkeypatch, victim, replace)
    r = scan_tree([os.fsencode(tree)], {sha(b"gamma")}, progress=False)
    assert [s.path for s in r.changed] == [os.fsencode(victim)]


def test_hash_file_refuses_a_fifo_and_a_symlink_without_blocking(tree: Path) -> None:
    fifo = hashscan.hash_file(os.fsencode(tree / "fifo"))
    assert isinstance(fifo, hashscan.Skipped) and fifo.kind is Skip.NOT_REGULAR
    link = hashscan.hash_file(os.fsencode(tree / "link-to-a"))
    assert isinstance(link, hashscan.Skipped) and link.kind is Skip.NOT_REGULAR
    assert hashscan.hash_file(os.fsencode(tree / "a")) == (sha(b"alpha"), 5)


def test_a_file_that_changed_between_listing_and_open_is_reported(tree: Path) -> None:
    st = os.stat(tree / "a")
    out = hashscan.hash_file(os.fsencode(tree / "a"), inode_key(st), st.st_size + 1, st.st_mtime_ns)
    assert isinstance(out, hashscan.Skipped) and out.kind is Skip.CHANGED


_SCAN_JSON = """
import json, sys
from pybpfguard.agent.policy.hashscan import scan_tree
r = scan_tree([sys.argv[1].encode()], set(), progress=False)
print(json.dumps({"files": r.files, "skipped": [[s.path.decode(), s.kind.value, s.detail] for s in r.skipped]}))
"""


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A temp dir nobody can traverse (pytest's tmp_path sits under a 0700 directory)."""
    with tempfile.TemporaryDirectory(prefix="pybpfguard-hashscan-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


def test_unreadable_files_and_directories_are_reported_with_the_reason(public_dir: Path) -> None:
    root = public_dir / "pub"
    root.mkdir(mode=0o755)
    (root / "ok").write_bytes(b"ok")
    (root / "secret").write_bytes(b"no")
    (root / "locked").mkdir()
    (root / "locked" / "inside").write_bytes(b"x")
    (root / "secret").chmod(0)
    (root / "locked").chmod(0)
    try:
        # As root every file is readable (CAP_DAC_OVERRIDE): scan in a child without the DAC capabilities.
        argv = [sys.executable, "-c", _SCAN_JSON, str(root)]
        if os.geteuid() == 0:
            argv = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
                    "-dac_override,-dac_read_search", *argv]
        out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60, check=True)
        got = json.loads(out.stdout)
    finally:
        (root / "locked").chmod(0o755)
    assert got["files"] == 1
    assert sorted(got["skipped"]) == [[str(root / "locked"), "unreadable", "cannot list: Permission denied"],
                                      [str(root / "secret"), "unreadable", "Permission denied"]]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("progress, tty, shown", [(False, True, False), (True, False, True), (None, False, False),
                                                  (None, True, False)])
def test_progress_bar_only_on_a_terminal_and_only_for_a_slow_scan(tree: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  progress: bool | None, tty: bool,
                                                                  shown: bool) -> None:
    """A quick scan (well under a second) on a terminal shows nothing with progress=None."""
    err = _Tty() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    scan_tree([os.fsencode(tree)], set(), progress=progress)
    assert ("hashing binaries" in err.getvalue()) is shown


def test_progress_bar_appears_on_a_terminal_when_the_scan_is_slow(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    err = _Tty()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(hashscan, "PROGRESS_DELAY_S", 0.05)
    real = hashscan._file_digest

    def slow(f: io.FileIO) -> bytes:
        import time

        time.sleep(0.05)
        return real(f)

    monkeypatch.setattr(hashscan, "_file_digest", slow)
    scan_tree([os.fsencode(tree)], set(), progress=None, workers=1)
    assert "hashing binaries" in err.getvalue()
