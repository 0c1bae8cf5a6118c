"""Reading BTF lazily: :class:`Spec` indexes record offsets once, decodes types on demand.

Source: include/uapi/linux/btf.h, Documentation/bpf/btf.rst. Kernel BTF is in /sys/kernel/btf/vmlinux;
each module's is in /sys/kernel/btf/<module>, *split* on top of vmlinux: its type ids continue after
vmlinux's last id and its string offsets continue after vmlinux's string section (btf.rst section 4.3
"split BTF"; libbpf's btf__parse_split).

Cost model (vmlinux on Linux 6.18: 5.5 MB, 126,610 types): mapping the file ~0.1 ms (reading it ~4 ms);
the record index (a walk that only steps over records, one dict lookup per record) ~15 ms, built on the
first lookup that needs a type id; a lookup by name is a byte search of the string section for the
name, then a search of the type section for records naming that string offset (~1 ms), checked against
the index. Nothing else is decoded. Decoded types and name searches are cached.
"""

from __future__ import annotations

import bisect
import errno
import mmap
import os
import re
import struct
import sys
from collections.abc import Iterator
from functools import cache

from pybpfguard.bpf.btf import attach as _attach
from pybpfguard.bpf.btf import members as _members
from pybpfguard.bpf.btf import types as t
from pybpfguard.bpf.btf.decode import decode_type
from pybpfguard.bpf.btf.errors import BTFFormatError, TypeNotFoundError, UnknownKindError
from pybpfguard.bpf.btf.kinds import BTF_HEADER, BTF_MAGIC, EXTRA_WORDS, BtfKind
from pybpfguard.bpf.errors import InvalidArgumentError

VMLINUX_PATH = "/sys/kernel/btf/vmlinux"
BTF_PATH_ENV = "PYBPFGUARD_BTF_PATH"  # docs/cli.md: location variable, no AEGIS_ fallback
_U32 = struct.Struct("<I")
_MAX_NAME_HITS = 16384  # false hits of one byte search before building the full name index (~25 ms)


class Spec:
    """One parsed BTF blob: vmlinux (``base=None``) or a module's split BTF (``base`` = vmlinux's Spec).

    Type ids: 0 is void; a base blob's records are ids ``1..``; a split blob's start at ``base.type_count``.
    ``Spec`` holds the blob (bytes, or a private read-only mapping of the file; never copied) and no fd.
    Raises BTFFormatError on a bad header or a record running past its section, UnknownKindError (naming
    kind and type id) on a kind outside 1..19 when the index is built.
    """

    def __init__(self, data: bytes | mmap.mmap, *, base: Spec | None = None, source: str = "<bytes>") -> None:
        if len(data) < BTF_HEADER.size:
            raise BTFFormatError(source, f"{len(data)} bytes, shorter than the {BTF_HEADER.size}-byte header")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = BTF_HEADER.unpack_from(data)
        if magic != BTF_MAGIC:
            what = "big-endian BTF is not supported" if magic == 0x9FEB else f"bad magic {magic:#06x}"
            raise BTFFormatError(source, what)
        if sys.byteorder != "little":  # pragma: no cover - x86_64 and arm64 hosts are little-endian
            raise BTFFormatError(source, "this reader runs on little-endian hosts only")
        if version != 1:
            raise BTFFormatError(source, f"version {version}, expected 1")
        type_start, str_start = hdr_len + type_off, hdr_len + str_off
        if type_start + type_len > len(data) or str_start + str_len > len(data) or type_len % 4:
            raise BTFFormatError(source, "header's type/string sections run past the blob or are misaligned")
        self.source = source
        self.base = base
        self._data = data
        self._type_start, self._type_end = type_start, type_start + type_len
        self._words = memoryview(data)[self._type_start : self._type_end].cast("I")
        self._strings = memoryview(data)[str_start : str_start + str_len]
        self._str_range = (str_start, str_start + str_len)
        self._first_id = base.type_count if base is not None else 1
        self._str_base = base.strings_size if base is not None else 0
        self._offsets: list[int] | None = None  # word index of each local record, built by _index()
        self._cache: dict[int, t.BtfType] = {}
        self._name_index: dict[int, list[int]] | None = None  # name_off -> local indexes, all records
        self._named: dict[int, list[int]] = {}  # the same, per name_off searched so far
        self._strings_named: dict[bytes, list[int]] = {}  # name -> its string offsets in this blob
        self._found: dict[tuple[int, str], tuple[int, ...]] = {}  # (kind, name) -> find_ids answer

    @classmethod
    def load(cls, path: str | os.PathLike[str], base: Spec | None = None) -> Spec:
        """Map or read the BTF file at *path* (split on *base* for module BTF). Raises OSError,
        BTFFormatError.

        sysfs BTF files can be mapped read-only and private since Linux 6.16 (kernel/bpf/sysfs_btf.c
        btf_sysfs_vmlinux_mmap); reading them instead costs one 4 KiB read() per page (~4 ms for vmlinux).
        Older kernels refuse the mapping, and then the file is read.
        """
        with open(path, "rb") as f:
            try:
                data: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
            except ValueError:  # an empty file cannot be mapped; the header check below names the problem
                data = b""
            except OSError as err:
                if err.errno not in (errno.EACCES, errno.ENODEV, errno.EINVAL, errno.EPERM):
                    raise
                data = f.read()  # sysfs before 6.16: no mmap for BTF files
            return cls(data, base=base, source=os.fspath(path))

    # -- sizes and ids --------------------------------------------------------------------------------

    @property
    def strings_size(self) -> int:
        """Bytes of string section, counting the base's: the first string offset of a blob split on this."""
        return self._str_base + len(self._strings)

    @property
    def type_count(self) -> int:
        """Number of type ids, void and the base's included: valid ids are ``0 .. type_count - 1``."""
        return self._first_id + len(self._index())

    @property
    def first_id(self) -> int:
        """The first type id this blob itself defines (1 for vmlinux)."""
        return self._first_id

    def _index(self) -> list[int]:
        """Word offsets of every local record, by walking the type section once (cached)."""
        if self._offsets is None:
            self._offsets = _walk(self._words, self._first_id, self.source)
        return self._offsets

    # -- strings --------------------------------------------------------------------------------------

    def name_of(self, name_off: int) -> str:
        """The string at *name_off* (offsets below ``base.strings_size`` are the base's)."""
        local = name_off - self._str_base
        if local < 0:
            assert self.base is not None
            return self.base.name_of(name_off)
        if name_off == 0:
            return ""
        lo, hi = self._str_range
        end = self._data.find(b"\0", lo + local, hi)
        if end < 0 or local >= hi - lo:
            raise BTFFormatError(self.source, f"string offset {name_off} is not a terminated string")
        return self._data[lo + local : end].decode("utf-8", "surrogateescape")

    def _string_offsets(self, name: bytes) -> list[int]:
        """Every string offset whose string equals *name*, in this blob's own string section (cached)."""
        found = self._strings_named.get(name)
        if found is None:
            found = self._strings_named[name] = self._search_strings(name)
        return found

    def _search_strings(self, name: bytes) -> list[int]:
        lo, hi = self._str_range
        found = []
        if self._data[lo : lo + len(name) + 1] == name + b"\0":  # (mmap has no startswith)
            found.append(self._str_base)
        pat = b"\0" + name + b"\0"
        pos = self._data.find(pat, lo, hi)
        while pos >= 0:
            found.append(self._str_base + pos + 1 - lo)
            pos = self._data.find(pat, pos + 1, hi)
        return found

    # -- types ----------------------------------------------------------------------------------------

    def type_by_id(self, type_id: int) -> t.BtfType:
        """The decoded type *type_id* (0 is :class:`~.types.Void`). Raises TypeNotFoundError."""
        if type_id < self._first_id:
            if type_id == 0:
                return t.Void(0, "void")
            if self.base is None or type_id < 0:
                raise TypeNotFoundError("type id", str(type_id))
            return self.base.type_by_id(type_id)
        typ = self._cache.get(type_id)
        if typ is None:
            offsets = self._index()
            local = type_id - self._first_id
            if local >= len(offsets):
                raise TypeNotFoundError("type id", str(type_id))
            typ = self._cache[type_id] = decode_type(self._words, offsets[local], type_id, self.name_of)
        return typ

    def __iter__(self) -> Iterator[t.BtfType]:
        """Every type this blob defines (not the base's), in id order, decoding each."""
        for type_id in range(self._first_id, self.type_count):
            yield self.type_by_id(type_id)

    def find_ids(self, kind: BtfKind, name: str) -> list[int]:
        """Ids of every type of *kind* named *name*, ascending, the base's first."""
        if not name:
            raise InvalidArgumentError("anonymous types cannot be looked up by name")
        hit = self._found.get((int(kind), name))
        if hit is not None:  # generators ask for the same few structs over and over
            return list(hit)
        ids = self.base.find_ids(kind, name) if self.base is not None else []
        raw = name.encode("utf-8", "surrogateescape")
        name_offs = list(self._string_offsets(raw))  # a copy: the cached list must not grow
        if self.base is not None:  # split records may name strings of the base
            name_offs += self.base._string_offsets_all(raw)
        for name_off in name_offs:
            ids.extend(self._local_ids_named(name_off, int(kind)))
        ids.sort()
        self._found[(int(kind), name)] = tuple(ids)
        return ids

    def _string_offsets_all(self, name: bytes) -> list[int]:
        offs = self.base._string_offsets_all(name) if self.base is not None else []
        return offs + self._string_offsets(name)

    def _local_ids_named(self, name_off: int, kind: int) -> list[int]:
        """Local type ids whose record has *name_off* and *kind*."""
        words, offsets, first = self._words, self._index(), self._first_id
        return [first + j for j in self._records_named(name_off) if (words[offsets[j] + 1] >> 24) & 0x1F == kind]

    def _records_named(self, name_off: int) -> list[int]:
        """Local indexes of the records (any kind) whose name is *name_off*, cached per offset.

        A byte search of the type section for the u32 *name_off*, each aligned hit confirmed as a record
        start against the index (members and params carrying the same name are not record starts). Falls
        back to a full name index when the value is common (small offsets also occur as sizes and ids).
        """
        if self._name_index is not None:
            return self._name_index.get(name_off, [])
        hit = self._named.get(name_off)
        if hit is not None:
            return hit
        offsets = self._index()
        # re's literal search skips ahead by the pattern's first byte, several times faster here than
        # bytes.find, whose skip table keys on the last byte: the high byte of a name_off, nearly always 0.
        search, start, end = re.compile(re.escape(_U32.pack(name_off))).search, self._type_start, self._type_end
        found, misses = [], 0
        match = search(self._data, start, end)
        while match is not None:
            pos = match.start()
            word = (pos - start) >> 2
            j = bisect.bisect_left(offsets, word)
            if not (pos - start) & 3 and j < len(offsets) and offsets[j] == word:
                found.append(j)
            else:
                misses += 1
                if misses > _MAX_NAME_HITS:
                    self._name_index = _name_index(self._words, offsets)
                    return self._name_index.get(name_off, [])
            match = search(self._data, pos + 1, end)
        self._named[name_off] = found
        return found

    def find(self, kind: BtfKind, name: str) -> t.BtfType:
        """The first type (lowest id, as the kernel's btf_find_by_name_kind) of *kind* named *name*.
        Raises TypeNotFoundError."""
        return self.type_by_id(self.find_id(kind, name))

    def find_id(self, kind: BtfKind, name: str) -> int:
        """The id of :meth:`find`'s type. Raises TypeNotFoundError naming kind and name."""
        ids = self.find_ids(kind, name)
        if not ids:
            raise TypeNotFoundError(BtfKind(kind).name.removeprefix("BTF_KIND_"), name)
        return ids[0]

    # -- type arithmetic ------------------------------------------------------------------------------

    def resolve(self, type_id: int) -> t.BtfType:
        """The type behind *type_id* after skipping typedef, const, volatile, restrict and type tags."""
        typ = self.type_by_id(type_id)
        for _ in range(64):  # a cycle of modifiers is malformed BTF; the kernel's verifier refuses it too
            if not isinstance(typ, t.MODIFIERS):
                return typ
            typ = self.type_by_id(typ.type_id)
        raise BTFFormatError(f"type id {type_id}", "modifier chain longer than 64 (a cycle?)")

    def sizeof(self, type_id: int) -> int:
        """Size in bytes of *type_id* as C's sizeof (pointers 8 bytes). Raises BTFFormatError for kinds
        without a size (void, FWD, FUNC, FUNC_PROTO)."""
        typ = self.resolve(type_id)
        if isinstance(typ, (t.Int, t.Struct, t.Enum, t.Float, t.Datasec)):
            return typ.size
        if isinstance(typ, t.Ptr):
            return 8  # BPF is a 64-bit target; kernel BTF of 64-bit arches has 8-byte pointers
        if isinstance(typ, t.Array):
            return typ.nelems * self.sizeof(typ.type_id)
        if isinstance(typ, t.Var):
            return self.sizeof(typ.type_id)
        raise BTFFormatError(f"type id {type_id}", f"{typ.kind.name} {typ.name!r} has no size")

    # -- member offsets and attach targets (implemented in members.py and attach.py) -------------------

    def member(self, type_name: str, path: str) -> _members.MemberInfo:
        """Where *path* (``"f_path.dentry"``, ``"comm[0]"``) lives in struct/union *type_name*, bitfields
        included. Raises TypeNotFoundError, MemberNotFoundError."""
        return _members.member(self, type_name, path)

    def member_offset(self, type_name: str, path: str) -> int:
        """Byte offset of *path* in *type_name*. Raises BitfieldMemberError for a bitfield, and as member()."""
        return _members.member(self, type_name, path).offset

    def attach_btf_id_for(self, attach: _attach.BtfAttach | str, name: str) -> int:
        """``attach_btf_id`` for ``("tp_btf", "sched_process_exec")``, ``("lsm", "file_open")``, ...
        (see :mod:`.attach`). Raises TypeNotFoundError when this kernel lacks the target."""
        return _attach.attach_btf_id_for(self, attach, name)

    def func_proto(self, func_name: str) -> t.FuncProto:
        """The FUNC_PROTO of the FUNC *func_name* (e.g. ``bpf_lsm_file_open``). Raises TypeNotFoundError."""
        return _attach.attach_proto(self, _attach.BtfAttach.FENTRY, func_name)

    def __repr__(self) -> str:
        return f"Spec({self.source!r}, first_id={self._first_id})"


def _walk(words: memoryview, first_id: int, source: str) -> list[int]:
    """Word index of each record: steps over records by the size their ``info`` word implies.

    The step depends on ``info`` only (kind and vlen), and vmlinux has a few hundred distinct ``info``
    values, so one dict lookup per record is the whole inner loop.
    """
    steps: dict[int, int] = {}
    offsets: list[int] = []
    append = offsets.append
    n, i = len(words), 0
    while True:
        try:
            while i < n:
                append(i)
                i += steps[words[i + 1]]
            break
        except KeyError:
            info = words[i + 1]
            try:
                fixed, per_vlen = EXTRA_WORDS[BtfKind((info >> 24) & 0x1F)]
            except (ValueError, KeyError):
                raise UnknownKindError((info >> 24) & 0x1F, first_id + len(offsets) - 1) from None
            steps[info] = 3 + fixed + per_vlen * (info & 0xFFFF)
            i += steps[info]
        except IndexError:
            raise BTFFormatError(source, f"type id {first_id + len(offsets) - 1} is truncated") from None
    if i != n:
        raise BTFFormatError(source, f"type id {first_id + len(offsets) - 1} runs past the type section")
    return offsets


def _name_index(words: memoryview, offsets: list[int]) -> dict[int, list[int]]:
    """name_off -> local indexes of the records carrying it (built only for very common offsets)."""
    index: dict[int, list[int]] = {}
    for j, w in enumerate(offsets):
        index.setdefault(words[w], []).append(j)
    return index


def vmlinux_path() -> str:
    """``$PYBPFGUARD_BTF_PATH`` if set (docs/cli.md), else /sys/kernel/btf/vmlinux."""
    return os.environ.get(BTF_PATH_ENV) or VMLINUX_PATH


@cache
def _load_cached(path: str) -> Spec:
    return Spec.load(path)


def load_vmlinux(path: str | os.PathLike[str] | None = None) -> Spec:
    """The kernel's BTF, read once per process and path (cached; the Spec is immutable).
    *path* defaults to :func:`vmlinux_path`. Raises OSError (no BTF: CONFIG_DEBUG_INFO_BTF unset),
    BTFFormatError."""
    return _load_cached(os.fspath(path) if path is not None else vmlinux_path())


def load_module(module: str, base: Spec | None = None, btf_dir: str | os.PathLike[str] = "/sys/kernel/btf") -> Spec:
    """A kernel module's split BTF from ``btf_dir/<module>``, on *base* (default :func:`load_vmlinux`)."""
    return Spec.load(os.path.join(btf_dir, module), base=base if base is not None else load_vmlinux())
