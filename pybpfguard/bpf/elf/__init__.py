"""Clang-built BPF ELF objects loaded the way libbpf loads them, with nothing but Python at run time.

- ``object``: read the ELF (pyelftools): functions, programs, maps, global data, relocations, BTF.ext
- ``sections``: libbpf's section names -> program type, attach type, target
- ``btfext``: ``.BTF.ext`` func_info, line_info, CO-RE records
- ``linker``: one program laid out with its subprograms, map and call references fixed
- ``btffix``: the object's ``.BTF`` made acceptable to BPF_BTF_LOAD
- ``collection``: ``Collection``: open, inspect, set constants, load, attach, pin, close
- ``core``: CO-RE relocation resolution (imported only for objects that carry CO-RE relocations)
"""

from pybpfguard.bpf.elf.collection import Collection, ProgramView
from pybpfguard.bpf.elf.errors import (
    BTFExtError,
    ConstantError,
    ELFError,
    ELFFormatError,
    MapDefinitionError,
    RelocationError,
    UnknownSectionError,
)
from pybpfguard.bpf.elf.object import MapDef, ObjectFile, ProgramDef

__all__ = [
    "BTFExtError",
    "Collection",
    "ConstantError",
    "ELFError",
    "ELFFormatError",
    "MapDef",
    "MapDefinitionError",
    "ObjectFile",
    "ProgramDef",
    "ProgramView",
    "RelocationError",
    "UnknownSectionError",
]
