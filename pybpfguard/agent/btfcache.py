"""A per-boot cache of what the daemon's program generators take from kernel BTF.

Parsing vmlinux BTF for the ~35 (struct, member) pairs the generators read and the 6 attach targets costs
~70 ms of every start-up (the record index walk, then byte searches per name; pybpfguard.bpf.btf.spec).
The kernel's own BTF cannot change while it runs, so the answers are recorded once per boot in
``/run/pybpfguard/btf-cache.json`` (``PYBPFGUARD_BTF_CACHE_PATH`` moves it) and later starts of the same
boot read them back without parsing BTF at all.

What is recorded: the layout of exactly the registry's fields of the programs the daemon loads
(:data:`DAEMON_PROGRAMS`, as :meth:`pybpfguard.bpf.btf.Layout.record` writes it, so a hit and a miss give
the generators the same recorded layout and the same bytes), and the ``attach_btf_id`` of each attach
target the daemon resolved (``"tp_btf/sched_process_exec" -> 123``). Key: ``/proc/sys/kernel/random/boot_id``
and the BTF file's path, size, inode and mtime (``PYBPFGUARD_BTF_PATH`` may point at a regular file).

Trust: the file decides which kernel offsets the enforcing programs read, so it is used only if it is a
regular file (never through a symlink), owned by this process's euid and writable by nobody else. A
missing, untrusted, corrupt or stale file is a miss: BTF is parsed as before and the file rewritten
atomically (a private temporary file, then rename). An unwritable location only costs the next start its
time: every failure to read or write is reported as a reason string, never raised.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from pybpfguard import __version__
from pybpfguard.agent import config
from pybpfguard.agent.instance import RUN_DIR
from pybpfguard.agent.programs import PROGRAMS
from pybpfguard.agent.statefiles import write_atomic
from pybpfguard.bpf.btf.errors import BTFError
from pybpfguard.bpf.btf.layout import Layout

if TYPE_CHECKING:
    from pybpfguard.bpf.btf.spec import Spec

CACHE_FORMAT = "pybpfguard.btfcache/1"
CACHE_FILE = "btf-cache.json"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"  # random(4): a UUID new at every boot
_MAX_BYTES = 1 << 20  # a cache file is ~3 KiB; anything this large is not ours

#: Registry entries (pybpfguard.agent.programs.PROGRAMS) the daemon generates and loads.
DAEMON_PROGRAMS = ("exec", "exec_signal_fallback", "fork", "exit", "procseed", "file_open", "bprm_check")


class BtfKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What must be equal for recorded answers to hold: the boot and the BTF file (size in bytes,
    ``mtime_ns`` ns since the epoch)."""

    boot_id: str
    btf_path: str
    btf_size: int
    btf_ino: int
    btf_mtime_ns: int
    agent_version: str  # another pybpfguard may resolve the same fields differently (an upgrade mid-boot)


class _CacheDoc(msgspec.Struct, forbid_unknown_fields=True):
    format: str
    key: BtfKey
    wanted: list[tuple[str, str]]
    layout: dict[str, object]  # Layout.record's dict (format pybpfguard.btf.layout/1)
    attach_btf_ids: dict[str, int]  # "<kind>/<target>" -> attach_btf_id


def cache_path() -> Path:
    """``$PYBPFGUARD_BTF_CACHE_PATH``, else ``/run/pybpfguard/btf-cache.json``."""
    return Path(config.env("BTF_CACHE_PATH") or RUN_DIR / CACHE_FILE)


def daemon_fields() -> list[tuple[str, str]]:
    """The sorted (struct, member) pairs the daemon's generators read (from the registry)."""
    return sorted({m for name in DAEMON_PROGRAMS for m in PROGRAMS[name].members})


def current_key(btf_path: str | None = None) -> BtfKey:
    """The key of this boot and BTF file (*btf_path* defaults to ``vmlinux_path()``). Raises OSError."""
    from pybpfguard.bpf.btf.spec import vmlinux_path

    path = os.path.abspath(btf_path or vmlinux_path())
    st = os.stat(path)
    try:
        with open(BOOT_ID_PATH) as f:
            boot_id = f.read().strip()
    except OSError:  # no boot id: a key no file can match, so the cache is never trusted (nor fatal)
        boot_id = f"unknown:{os.getpid()}:{time.time_ns()}"
    return BtfKey(boot_id, path, st.st_size, st.st_ino, st.st_mtime_ns, __version__)


class KernelBtf:
    """The layout and attach ids for this boot, recorded (``source == "cache"``) or from BTF (``"btf"``).

    ``layout`` answers every field of :func:`daemon_fields` (LayoutMissingError for others, as the
    listings' recorded layout does); when this kernel's BTF lacks one of them it is the live BTF layout
    instead and nothing is cached. ``miss_reason`` says why the file was not used ("" on a hit).
    """

    def __init__(self, key: BtfKey, path: Path) -> None:
        self.key = key
        self.path = path
        self.wanted = daemon_fields()
        self.source = "btf"
        self.miss_reason = ""
        self.layout: Layout
        self._layout_doc: dict[str, object] | None = None
        self._attach: dict[str, int] = {}
        self._dirty = False

    def _spec(self) -> Spec:
        """The kernel's BTF, parsed on first use (only on a miss or an unrecorded attach target)."""
        from pybpfguard.bpf.btf.spec import load_vmlinux

        return load_vmlinux(self.key.btf_path)

    def attach_btf_id(self, attach: str) -> int:
        """``attach_btf_id`` of *attach* (``"tp_btf/sched_process_exec"``, ``"lsm/file_open"``,
        ``"iter/task"``): recorded, else resolved from BTF and recorded. 0 when this kernel has no such
        target, so the loader resolves it itself and raises its TypeNotFoundError as without a cache."""
        hit = self._attach.get(attach)
        if hit is not None:
            return hit
        kind, _, target = attach.partition("/")
        try:
            type_id = self._spec().attach_btf_id_for(kind, target)
        except (BTFError, ValueError):
            return 0
        self._attach[attach] = type_id
        self._dirty = True
        return type_id

    def save(self) -> str:
        """Write the cache if this start learned something it did not hold; returns "" or why not."""
        if not self._dirty or self._layout_doc is None:
            return ""
        doc = _CacheDoc(CACHE_FORMAT, self.key, self.wanted, self._layout_doc, dict(sorted(self._attach.items())))
        try:
            write_atomic(self.path, msgspec.json.encode(doc))
        except OSError as err:
            return f"{self.path}: {err.strerror or err}"
        self._dirty = False
        return ""


def acquire(path: Path | None = None, btf_path: str | None = None) -> KernelBtf:
    """The layout and attach ids for the daemon's generators: from the cache at *path* (default
    :func:`cache_path`) when it holds this boot's answers, else from the kernel's BTF (*btf_path*, default
    ``vmlinux_path()``). Call :meth:`KernelBtf.save` once every program is loaded. Raises what
    ``load_vmlinux`` raises (OSError, BTFFormatError) only when BTF must be parsed."""
    btf = KernelBtf(current_key(btf_path), path if path is not None else cache_path())
    doc, reason = _read(btf.path, btf.key, btf.wanted)
    if doc is not None:
        try:
            btf.layout = Layout.from_dict(doc.layout)
        except BTFError as err:
            reason = f"corrupt layout: {err}"
        else:
            btf.source, btf._layout_doc, btf._attach = "cache", doc.layout, dict(doc.attach_btf_ids)
            return btf
    btf.miss_reason = reason
    spec = btf._spec()
    try:
        btf._layout_doc = Layout.record(spec, btf.wanted, kernel=os.uname().release)
    except BTFError as err:  # a field this kernel lacks: the generator that reads it will say which
        btf.miss_reason = f"{reason}; not cached: {err}"
        btf.layout = Layout.from_btf(spec)
        return btf
    btf.layout = Layout.from_dict(btf._layout_doc)
    btf._dirty = True
    return btf


def _read(path: Path, key: BtfKey, wanted: Iterable[tuple[str, str]]) -> tuple[_CacheDoc | None, str]:
    """The cached document if it is trusted and holds this key's answers, else (None, why not)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None, "no cache file"
    except OSError as err:  # ELOOP: a symlink, never followed
        return None, f"cannot open: {err.strerror or err}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None, f"untrusted: mode {stat.filemode(st.st_mode)} uid {st.st_uid}"
        data = os.read(fd, _MAX_BYTES + 1)
    except OSError as err:
        return None, f"cannot read: {err.strerror or err}"
    finally:
        os.close(fd)
    if len(data) > _MAX_BYTES:
        return None, f"corrupt: larger than {_MAX_BYTES} bytes"
    try:
        doc = msgspec.json.decode(data, type=_CacheDoc)
    except msgspec.DecodeError as err:
        return None, f"corrupt: {err}"
    if doc.format != CACHE_FORMAT:
        return None, f"format {doc.format!r}, expected {CACHE_FORMAT!r}"
    if doc.key != key:
        return None, "stale: another boot or BTF file"
    if [tuple(m) for m in doc.wanted] != list(wanted):
        return None, "stale: the generators read other fields"
    return doc, ""


__all__ = ["CACHE_FORMAT", "DAEMON_PROGRAMS", "BtfKey", "KernelBtf", "acquire", "cache_path", "current_key",
           "daemon_fields"]
