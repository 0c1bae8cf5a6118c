"""Kernel struct layout for program generators: live from BTF, or recorded to a JSON-able dict.

A generator asks ``layout.offsetof("task_struct", "tgid")`` (bytes), ``layout.sizeof("task_struct")``
(bytes) or ``layout.field("task_struct", "tgid")`` (offset and size, the size choosing the load width).
Live (:meth:`Layout.from_btf`) it answers anything BTF knows; recorded (:meth:`Layout.from_dict`, for the
reviewed listings in bytecode/) it answers exactly what :meth:`Layout.record` was asked for and raises
LayoutMissingError for anything else, so a listing never depends silently on the build host's kernel.

Recorded dict (``format`` ``"pybpfguard.btf.layout/1"``)::

    {"format": "pybpfguard.btf.layout/1", "source": "/sys/kernel/btf/vmlinux", "kernel": "6.18.44-fc",
     "members": {"task_struct": {"tgid": {"offset": 1268, "size": 4}}},
     "sizes": {"task_struct": 9536}}
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from pybpfguard.bpf.btf.errors import LayoutFormatError, LayoutMissingError, TypeNotFoundError
from pybpfguard.bpf.btf.kinds import BtfKind
from pybpfguard.bpf.btf.spec import Spec

LAYOUT_FORMAT = "pybpfguard.btf.layout/1"


class Field(msgspec.Struct, frozen=True, gc=False):
    """A member's byte ``offset`` in its outermost type and its byte ``size``."""

    offset: int
    size: int


class _LayoutDoc(msgspec.Struct, forbid_unknown_fields=True):
    format: str
    members: dict[str, dict[str, Field]]
    sizes: dict[str, int]
    source: str = ""
    kernel: str = ""


# Kinds a sizeof(name) may mean, most specific first (C's struct/union tags, then typedef names, ...).
_SIZED_KINDS = (
    BtfKind.BTF_KIND_STRUCT,
    BtfKind.BTF_KIND_UNION,
    BtfKind.BTF_KIND_TYPEDEF,
    BtfKind.BTF_KIND_INT,
    BtfKind.BTF_KIND_ENUM,
    BtfKind.BTF_KIND_ENUM64,
    BtfKind.BTF_KIND_FLOAT,
)


def _sizeof_name(spec: Spec, name: str) -> int:
    for kind in _SIZED_KINDS:
        ids = spec.find_ids(kind, name)
        if ids:
            return spec.sizeof(ids[0])
    raise TypeNotFoundError("STRUCT/UNION/TYPEDEF/INT/ENUM/FLOAT", name)


class Layout:
    """Offsets and sizes of kernel types. Build with :meth:`from_btf` or :meth:`from_dict`."""

    __slots__ = ("_cache", "_doc", "_spec")

    def __init__(self, spec: Spec | None, doc: _LayoutDoc | None) -> None:
        self._spec = spec
        self._doc = doc
        self._cache: dict[tuple[str, str], Field] = {}

    @classmethod
    def from_btf(cls, spec: Spec) -> Layout:
        """A live layout answering from *spec* (borrowed)."""
        return cls(spec, None)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Layout:
        """A recorded layout. Raises LayoutFormatError naming the bad path (``$.members.task_struct``...)."""
        try:
            doc = msgspec.convert(d, _LayoutDoc)
        except msgspec.ValidationError as err:
            raise LayoutFormatError(str(err)) from err
        if doc.format != LAYOUT_FORMAT:
            raise LayoutFormatError(f"format {doc.format!r}, expected {LAYOUT_FORMAT!r}")
        return cls(None, doc)

    @staticmethod
    def record(
        btf: Spec, wanted: Iterable[tuple[str, str]], sizes: Iterable[str] = (), *, kernel: str = ""
    ) -> dict[str, object]:
        """The dict for :meth:`from_dict`: each ``(type_name, path)`` in *wanted* and the sizes of *sizes*
        plus every type named in *wanted*. Raises as :meth:`Spec.member` and BitfieldMemberError."""
        members: dict[str, dict[str, Field]] = {}
        size_names = list(sizes)
        for type_name, path in wanted:
            info = btf.member(type_name, path)
            members.setdefault(type_name, {})[path] = Field(info.offset, info.size)
            size_names.append(type_name)
        doc = _LayoutDoc(
            LAYOUT_FORMAT,
            members,
            {name: _sizeof_name(btf, name) for name in sorted(set(size_names))},
            btf.source,
            kernel,
        )
        return msgspec.to_builtins(doc)

    def field(self, type_name: str, path: str) -> Field:
        """Byte offset and size of member *path* (``"f_path.dentry"``) of *type_name*.
        Raises TypeNotFoundError/MemberNotFoundError/BitfieldMemberError (live), LayoutMissingError (recorded)."""
        if self._spec is not None:
            hit = self._cache.get((type_name, path))
            if hit is None:  # a generator asks for the same few members many times
                info = self._spec.member(type_name, path)
                hit = self._cache[(type_name, path)] = Field(info.offset, info.size)
            return hit
        assert self._doc is not None
        try:
            return self._doc.members[type_name][path]
        except KeyError:
            raise LayoutMissingError(f"member {type_name}.{path}", self._doc.source or "<dict>") from None

    def offsetof(self, type_name: str, path: str) -> int:
        """``offsetof(struct type_name, path)`` in bytes; raises as :meth:`field`."""
        return self.field(type_name, path).offset

    def sizeof(self, type_name: str) -> int:
        """``sizeof`` the struct/union/typedef/int/enum/float named *type_name*, in bytes."""
        if self._spec is not None:
            return _sizeof_name(self._spec, type_name)
        assert self._doc is not None
        try:
            return self._doc.sizes[type_name]
        except KeyError:
            raise LayoutMissingError(f"size of {type_name}", self._doc.source or "<dict>") from None

    def __repr__(self) -> str:
        if self._spec is not None:
            return f"Layout.from_btf({self._spec!r})"
        assert self._doc is not None
        return f"Layout.from_dict(<{sum(map(len, self._doc.members.values()))} members from {self._doc.source}>)"


__all__ = ["LAYOUT_FORMAT", "Field", "Layout"]
