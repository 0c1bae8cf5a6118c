"""Errors of the ELF object loader; each names the section or symbol at fault."""

from __future__ import annotations

from pybpfguard.bpf.errors import BPFError


class ELFError(BPFError):
    """Root of the object loader's errors: ``path`` (the object file, or ``"<bytes>"``) and ``where``
    (the section or symbol at fault, or ``""``)."""

    def __init__(self, path: str, where: str, reason: str) -> None:
        super().__init__(path, where, reason)
        self.path = path
        self.where = where
        self.reason = reason

    def __str__(self) -> str:
        where = f" {self.where}" if self.where else ""
        return f"{self.path}:{where}: {self.reason}" if where else f"{self.path}: {self.reason}"


class ELFFormatError(ELFError):
    """Not a readable BPF ELF object: truncated, wrong class/machine, a section running past the file."""


class UnknownSectionError(ELFError):
    """A code section whose name maps to no program type (libbpf's section conventions)."""


class RelocationError(ELFError):
    """A relocation this loader cannot apply: against a missing symbol, a section we do not load, or an
    instruction of the wrong kind."""


class BTFExtError(ELFError):
    """``.BTF.ext`` is malformed: a bad header, a record past its section, a section name not in .BTF."""


class MapDefinitionError(ELFError):
    """A map in ``.maps`` or ``maps`` this loader cannot turn into a MapSpec."""


class ConstantError(ELFError):
    """``set_constant``: no such variable in ``.rodata``, a value that does not fit, or already loaded."""
