"""Errors of the BTF package; all derive from :class:`~pybpfguard.bpf.errors.BPFError`."""

from __future__ import annotations

from pybpfguard.bpf.errors import BPFError


class BTFError(BPFError):
    """Root of BTF errors."""


class BTFFormatError(BTFError):
    """The blob is not valid BTF. ``where`` says what (``"type id 412"``, ``"header"``, a file path)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(where, problem)
        self.where = where
        self.problem = problem

    def __str__(self) -> str:
        return f"BTF {self.where}: {self.problem}"


class UnknownKindError(BTFFormatError):
    """A type record of a kind this reader does not know (tests/program/test_program_load.py)."""

    def __init__(self, kind: int, type_id: int, where: str = "") -> None:
        BTFError.__init__(self, kind, type_id, where)
        self.kind = kind
        self.type_id = type_id
        self.where = where or f"type id {type_id}"
        self.problem = f"unknown kind {kind} (this reader knows kinds 1..19)"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.kind, self.type_id, self.where))


class TypeNotFoundError(BTFError, KeyError):
    """No type of ``kind`` named ``name`` (or no type with id ``name`` when looked up by id)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(kind, name)
        self.kind = kind
        self.name = name

    def __str__(self) -> str:
        return f"no BTF {self.kind} named {self.name!r}"


class MemberNotFoundError(BTFError, KeyError):
    """``path`` (e.g. ``"f_path.dentry"``) does not lead to a member of ``type_name``; ``problem`` says
    where it stopped."""

    def __init__(self, type_name: str, path: str, problem: str) -> None:
        super().__init__(type_name, path, problem)
        self.type_name = type_name
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.type_name}.{self.path}: {self.problem}"


class BitfieldMemberError(BTFError):
    """A byte offset was asked of a bitfield member; ``bit_offset`` and ``bitfield_size`` are in bits."""

    def __init__(self, type_name: str, path: str, bit_offset: int, bitfield_size: int) -> None:
        super().__init__(type_name, path, bit_offset, bitfield_size)
        self.type_name = type_name
        self.path = path
        self.bit_offset = bit_offset
        self.bitfield_size = bitfield_size

    def __str__(self) -> str:
        return (
            f"{self.type_name}.{self.path} is a bitfield ({self.bitfield_size} bits at bit {self.bit_offset}): "
            "it has no byte offset; use member() for its bits"
        )


class LayoutMissingError(BTFError, KeyError):
    """A recorded :class:`~pybpfguard.bpf.btf.layout.Layout` was asked for an entry it did not record."""

    def __init__(self, what: str, source: str) -> None:
        super().__init__(what, source)
        self.what = what
        self.source = source

    def __str__(self) -> str:
        return f"layout recorded from {self.source} has no {self.what}: add it to the wanted list and re-record"


class LayoutFormatError(BTFError):
    """A layout dict that is not one :meth:`Layout.record` wrote; ``problem`` gives msgspec's path."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem

    def __str__(self) -> str:
        return f"bad layout dict: {self.problem}"
