"""Read a clang-built BPF ELF object (``clang -target bpf -g -O2 -c``) with pyelftools: its functions,
programs, maps, global data, relocations, BTF and BTF.ext. Nothing here touches the kernel.

Conventions are libbpf's (tools/lib/bpf/libbpf.c): every FUNC symbol of an executable section is a
function; those in a program section (sections.py) are programs, those in ``.text`` are subprograms;
``.maps`` holds BTF-defined maps, ``maps`` legacy ``struct bpf_map_def`` records (5 u32); ``.data``,
``.rodata``, ``.bss``, ``.data.*``, ``.rodata.*`` become one-element array maps.
"""

from __future__ import annotations

import enum
import io
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from elftools.common.exceptions import ELFError as _PyELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from pybpfguard.bpf.btf import types as bt
from pybpfguard.bpf.btf.errors import BTFError
from pybpfguard.bpf.btf.spec import Spec
from pybpfguard.bpf.elf.btfext import BTFExt, parse_btf_ext
from pybpfguard.bpf.elf.errors import ELFError, ELFFormatError, MapDefinitionError, RelocationError, UnknownSectionError
from pybpfguard.bpf.elf.sections import SectionInfo, parse_section
from pybpfguard.bpf.errors import BPFError
from pybpfguard.bpf.maps.errors import MapSpecError
from pybpfguard.bpf.maps.spec import MapSpec
from pybpfguard.bpf.maps.types import MapFlags, MapType

EM_BPF = 247
SHF_EXECINSTR = 0x4
SHF_ALLOC = 0x2
R_BPF_64_64 = 1  # ld_imm64 of a map, global data or a function address
R_BPF_64_32 = 10  # call
INSN_BYTES = 8
_DATA_SECTION = re.compile(r"^\.(data|rodata|bss)(\..+)?$")
_LEGACY_MAP_DEF = struct.Struct("<5I")  # struct bpf_map_def: type, key_size, value_size, max_entries, map_flags
_ELF64_REL = struct.Struct("<QQ")  # Elf64_Rel: r_offset, r_info (symbol index << 32 | type)
_MAP_NAME_BYTES = 15  # BPF_OBJ_NAME_LEN - 1
_READ_ERRORS = (_PyELFError, struct.error, ValueError, IndexError, KeyError, UnicodeDecodeError, OverflowError)


class Pinning(enum.IntEnum):
    """``pinning`` of a BTF map (libbpf's enum libbpf_pin_type)."""

    NONE = 0
    BY_NAME = 1  # LIBBPF_PIN_BY_NAME: <pin root>/<map name>


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    section_index: int  # 0: undefined (extern)
    value: int
    size: int
    is_func: bool
    is_section: bool


@dataclass(frozen=True, slots=True)
class Reloc:
    """One relocation in a code section: the slot it patches and the symbol it names."""

    insn_index: int  # slot within the section
    symbol: Symbol
    rtype: int


@dataclass(frozen=True, slots=True)
class Function:
    """A FUNC symbol: ``start``/``count`` in slots within its section."""

    name: str
    section: str
    section_index: int
    start: int
    count: int


@dataclass(slots=True)
class CodeSection:
    name: str
    index: int
    code: bytes
    relocs: dict[int, Reloc] = field(default_factory=dict)
    functions: list[Function] = field(default_factory=list)

    def function_at(self, slot: int) -> Function | None:
        for fn in self.functions:
            if fn.start <= slot < fn.start + fn.count:
                return fn
        return None


@dataclass(frozen=True, slots=True)
class ProgramDef:
    """A program: its function (in a program section), the section's kind and target."""

    function: Function
    section: SectionInfo

    @property
    def name(self) -> str:
        return self.function.name


class MapOrigin(enum.Enum):
    """Where a map of the object is defined."""

    BTF = "btf"  # .maps
    LEGACY = "legacy"  # maps (struct bpf_map_def)
    DATA = "data"  # a global data section


@dataclass(frozen=True, slots=True)
class MapDef:
    """A map of the object. ``name``: the symbol (``counts``) or data section (``.rodata``);
    ``spec.name`` is the kernel's 15-byte name. ``section_index``/``offset``: where its symbol lives, for
    relocations. ``data``: initial bytes of a global data map (b"" for .bss). ``pinning``: Pinning."""

    name: str
    spec: MapSpec
    origin: MapOrigin
    section_index: int
    offset: int
    data: bytes = b""
    pinning: Pinning = Pinning.NONE
    init_values: tuple[tuple[int, str], ...] = ()  # (slot, inner map name) of a map of maps

    @property
    def frozen(self) -> bool:
        """True for ``.rodata*``: read-only to programs and frozen after its contents are written."""
        return self.origin == MapOrigin.DATA and self.name.startswith(".rodata")


@dataclass(slots=True)
class ObjectFile:
    """The parsed object. ``btf``: the object's ``.BTF`` (raw bytes and parsed Spec) or None without -g."""

    path: str
    name: str  # the object name libbpf uses: file name up to its first '.'
    license: str
    kern_version: int
    code_sections: dict[int, CodeSection]
    programs: dict[str, ProgramDef]
    maps: dict[str, MapDef]
    section_sizes: dict[str, int]
    symbol_offsets: dict[str, int]  # data symbol name -> offset in its section (for DATASEC fixup)
    btf_raw: bytes | None
    btf: Spec | None
    ext: BTFExt | None

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ObjectFile:
        """Read the object file at *path*. Raises OSError, ELFError subclasses naming the section/symbol."""
        with open(path, "rb") as f:
            data = f.read()
        return cls.from_bytes(data, os.fspath(path))

    @classmethod
    def from_bytes(cls, data: bytes, path: str = "<bytes>") -> ObjectFile:
        """Parse *data*. Every failure is an ELFError subclass (or a BTFError of the BTF reader)."""
        try:
            return _Reader(data, path).read()
        except (ELFError, BTFError):
            raise
        except BPFError as err:
            raise ELFFormatError(path, "", str(err)) from err
        except _READ_ERRORS as err:
            raise ELFFormatError(path, "", f"unreadable ELF ({type(err).__name__}: {err})") from err


def object_name(path: str) -> str:
    """libbpf's object name: the file name without directory, up to its first '.'."""
    base = os.path.basename(path)
    return base.split(".", 1)[0] or base


def internal_map_name(obj_name: str, section: str) -> str:
    """The kernel name libbpf gives the map of data section *section* (libbpf.c internal_map_name):
    up to 8 characters of the object name then the section name, 15 bytes at most, [A-Za-z0-9_.] only."""
    sfx_len = max(7, len(section))
    pfx_len = 0 if "." in section[1:] else max(0, min(_MAP_NAME_BYTES - sfx_len, len(obj_name)))
    name = (obj_name[:pfx_len] + section[:sfx_len])[:_MAP_NAME_BYTES]
    return _sanitize(name)


def _init_slots(inits: dict[int, str], sym: Symbol, values_at: int) -> tuple[tuple[int, str], ...]:
    """(slot, inner map) for the relocations in *sym*'s ``values`` array (8-byte pointers from *values_at*)."""
    if values_at < 0:
        return ()
    first, end = sym.value + values_at, sym.value + sym.size
    return tuple(sorted(((off - first) // 8, target) for off, target in inits.items() if first <= off < end))


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)[:_MAP_NAME_BYTES]


class _Reader:
    def __init__(self, data: bytes, path: str) -> None:
        self.data = data
        self.path = path
        try:
            self.elf = ELFFile(io.BytesIO(data))
        except _READ_ERRORS as err:
            raise ELFFormatError(path, "", f"not an ELF object ({err})") from err

    def fail(self, cls: type[ELFError], where: str, reason: str) -> ELFError:
        return cls(self.path, where, reason)

    def read(self) -> ObjectFile:
        elf = self.elf
        if elf["e_machine"] != "EM_BPF" and elf["e_machine"] != EM_BPF:
            raise self.fail(ELFFormatError, "", f"machine {elf['e_machine']}, not EM_BPF (built with -target bpf?)")
        if elf.elfclass != 64 or not elf.little_endian:
            raise self.fail(ELFFormatError, "", "only little-endian 64-bit BPF objects are supported")
        sections = list(elf.iter_sections())
        names = [s.name for s in sections]
        symtab = next((s for s in sections if isinstance(s, SymbolTableSection)), None)
        if symtab is None:
            raise self.fail(ELFFormatError, ".symtab", "the object has no symbol table")
        symbols = [self._symbol(s) for s in symtab.iter_symbols()]
        sizes = {s.name: s["sh_size"] for s in sections}
        btf_raw, btf = self._btf(names, sections)
        ext = self._btf_ext(names, sections, btf)
        license, kern_version = "", 0
        code: dict[int, CodeSection] = {}
        for idx, sec in enumerate(sections):
            if sec.name == "license":
                license = sec.data().split(b"\0", 1)[0].decode(errors="replace")
            elif sec.name == "version" and sec["sh_size"] >= 4:
                kern_version = int.from_bytes(sec.data()[:4], "little")
            elif sec["sh_type"] == "SHT_PROGBITS" and sec["sh_flags"] & SHF_EXECINSTR and sec["sh_size"]:
                if sec.name != ".text" and parse_section(sec.name) is None:
                    raise self.fail(UnknownSectionError, sec.name, "no program type for this section name "
                                    "(libbpf's conventions: lsm/, tp_btf/, tracepoint/, cgroup/connect4, socket, ...)")
                body = sec.data()
                if len(body) % INSN_BYTES:
                    raise self.fail(ELFFormatError, sec.name, f"{len(body)} bytes, not whole instructions")
                code[idx] = CodeSection(sec.name, idx, body)
        for sym in symbols:
            if sym.is_func and sym.section_index in code:
                cs = code[sym.section_index]
                if sym.value % INSN_BYTES or sym.value + sym.size > len(cs.code):
                    raise self.fail(ELFFormatError, sym.name, f"function outside section {cs.name}")
                cs.functions.append(Function(sym.name, cs.name, cs.index, sym.value // INSN_BYTES,
                                             max(1, sym.size // INSN_BYTES)))
        for cs in code.values():
            cs.functions.sort(key=lambda f: f.start)
        self._relocations(sections, symbols, code)
        programs: dict[str, ProgramDef] = {}
        for cs in code.values():
            info = parse_section(cs.name)
            if info is None:
                continue  # .text: subprograms only
            if not cs.functions:
                raise self.fail(ELFFormatError, cs.name, "a program section without a FUNC symbol")
            for fn in cs.functions:
                programs[fn.name] = ProgramDef(fn, info)
        obj_name = object_name(self.path)
        maps = self._maps(sections, names, symbols, btf, obj_name)
        offsets = {s.name: s.value for s in symbols if not s.is_func and not s.is_section and s.section_index}
        return ObjectFile(self.path, obj_name, license, kern_version, code, programs, maps, sizes, offsets,
                          btf_raw, btf, ext)

    def _symbol(self, s: Any) -> Symbol:
        shndx = s["st_shndx"]
        return Symbol(s.name, shndx if isinstance(shndx, int) else 0, s["st_value"], s["st_size"],
                      s["st_info"]["type"] == "STT_FUNC", s["st_info"]["type"] == "STT_SECTION")

    def _btf(self, names: list[str], sections: list[Any]) -> tuple[bytes | None, Spec | None]:
        if ".BTF" not in names:
            return None, None
        raw = sections[names.index(".BTF")].data()
        return raw, Spec(raw, source=f"{self.path} .BTF")

    def _btf_ext(self, names: list[str], sections: list[Any], btf: Spec | None) -> BTFExt | None:
        if ".BTF.ext" not in names or btf is None:
            return None
        return parse_btf_ext(sections[names.index(".BTF.ext")].data(), btf.name_of, self.path)

    def _relocations(self, sections: list[Any], symbols: list[Symbol], code: dict[int, CodeSection]) -> None:
        for sec in sections:
            if sec["sh_type"] != "SHT_REL" or sec["sh_info"] not in code:
                continue
            cs = code[sec["sh_info"]]
            for r_offset, sym_idx, r_type in self._rel_entries(sec, symbols):
                if r_offset % INSN_BYTES or r_offset >= len(cs.code):
                    raise self.fail(RelocationError, f"{sec.name} offset {r_offset}",
                                    "relocation outside the section's instructions")
                slot = r_offset // INSN_BYTES
                cs.relocs[slot] = Reloc(slot, symbols[sym_idx], r_type)

    def _rel_entries(self, sec: Any, symbols: list[Symbol]) -> list[tuple[int, int, int]]:
        """(r_offset, symbol index, type) of each Elf64_Rel of *sec*, read in one pass (pyelftools parses
        entries one at a time, ~40 us each). Raises RelocationError for a symbol index past the table."""
        body = sec.data()
        out = []
        for r_offset, r_info in _ELF64_REL.iter_unpack(body[: len(body) - len(body) % _ELF64_REL.size]):
            sym_idx = r_info >> 32
            if not 0 < sym_idx < len(symbols):
                raise self.fail(RelocationError, f"{sec.name} offset {r_offset}",
                                f"relocation against missing symbol #{sym_idx}")
            out.append((r_offset, sym_idx, r_info & 0xFFFFFFFF))
        return out

    def _maps(self, sections: list[Any], names: list[str], symbols: list[Symbol], btf: Spec | None,
              obj_name: str) -> dict[str, MapDef]:
        maps: dict[str, MapDef] = {}
        for idx, sec in enumerate(sections):
            if sec.name == ".maps":
                if btf is None:
                    raise self.fail(MapDefinitionError, ".maps", "BTF-defined maps need .BTF (compile with -g)")
                inits = self._map_inits(sections, idx, symbols)
                for sym in symbols:
                    if sym.section_index == idx and not sym.is_section and sym.name:
                        spec, pinning, values_at = self._btf_map(btf, sym.name)
                        maps[sym.name] = MapDef(sym.name, spec, MapOrigin.BTF, idx, sym.value, pinning=pinning,
                                                init_values=_init_slots(inits, sym, values_at))
                for missing in {t for m in maps.values() for _, t in m.init_values} - set(maps):
                    raise self.fail(MapDefinitionError, missing, "an inner map initializer names no map in .maps")
            elif sec.name == "maps":
                body = sec.data()
                for sym in symbols:
                    if sym.section_index == idx and not sym.is_section and sym.name:
                        if sym.value + _LEGACY_MAP_DEF.size > len(body):
                            raise self.fail(MapDefinitionError, sym.name, "struct bpf_map_def runs past section maps")
                        mtype, ks, vs, entries, flags = _LEGACY_MAP_DEF.unpack_from(body, sym.value)
                        spec = self._spec(sym.name, type=mtype, key_size=ks, value_size=vs,
                                          max_entries=entries, flags=flags, name=_sanitize(sym.name))
                        maps[sym.name] = MapDef(sym.name, spec, MapOrigin.LEGACY, idx, sym.value)
            elif _DATA_SECTION.match(sec.name) and sec["sh_flags"] & SHF_ALLOC and sec["sh_size"]:
                nobits = sec["sh_type"] == "SHT_NOBITS"
                flags = MapFlags.BPF_F_MMAPABLE
                if sec.name.startswith(".rodata"):
                    flags |= MapFlags.BPF_F_RDONLY_PROG
                spec = self._spec(sec.name, type=MapType.BPF_MAP_TYPE_ARRAY, key_size=4,
                                  value_size=sec["sh_size"], max_entries=1, flags=flags,
                                  name=internal_map_name(obj_name, sec.name))
                maps[sec.name] = MapDef(sec.name, spec, MapOrigin.DATA, idx, 0, b"" if nobits else sec.data())
        return maps

    def _spec(self, where: str, **fields: Any) -> MapSpec:
        try:
            fields["type"] = MapType(fields["type"])
            return MapSpec(**fields)
        except (ValueError, MapSpecError) as err:
            raise self.fail(MapDefinitionError, where, str(err)) from err

    def _map_inits(self, sections: list[Any], maps_idx: int, symbols: list[Symbol]) -> dict[int, str]:
        """Relocations of ``.maps`` (``.values = { [0] = &inner }``): byte offset -> the map symbol named."""
        inits: dict[int, str] = {}
        for sec in sections:
            if sec["sh_type"] == "SHT_REL" and sec["sh_info"] == maps_idx:
                for r_offset, sym_idx, _r_type in self._rel_entries(sec, symbols):
                    inits[r_offset] = symbols[sym_idx].name
        return inits

    def _btf_map(self, btf: Spec, name: str) -> tuple[MapSpec, Pinning, int]:
        var_ids = btf.find_ids(bt.Var.kind, name)
        if not var_ids:
            raise self.fail(MapDefinitionError, name, "no BTF VAR of this name for the map in .maps")
        var = btf.type_by_id(var_ids[0])
        assert isinstance(var, bt.Var)
        return self._btf_map_def(btf, name, var.type_id)

    def _btf_map_def(self, btf: Spec, name: str, type_id: int) -> tuple[MapSpec, Pinning, int]:
        """The map's spec, its pinning and the byte offset of its ``values`` member (-1: none)."""
        st = btf.resolve(type_id)
        if not isinstance(st, bt.Struct):
            raise self.fail(MapDefinitionError, name, f"a map definition is a struct, not {st.kind.name}")
        fields: dict[str, Any] = {"name": _sanitize(name), "key_size": 0, "value_size": 0}
        pinning = Pinning.NONE
        values_at = -1
        for m in st.members:
            if m.name in ("type", "max_entries", "map_flags", "pinning", "key_size", "value_size", "map_extra",
                          "numa_node"):
                value = self._uint_field(btf, name, m)
                if m.name == "map_flags":
                    fields["flags"] = value
                elif m.name == "pinning":
                    if value not in Pinning._value2member_map_:
                        raise self.fail(MapDefinitionError, name, f"pinning {value}: only 0 and 1 (by name) exist")
                    pinning = Pinning(value)
                elif m.name != "numa_node":
                    fields[m.name] = value
            elif m.name in ("key", "value"):
                ptr = btf.resolve(m.type_id)
                if not isinstance(ptr, bt.Ptr):
                    raise self.fail(MapDefinitionError, f"{name}.{m.name}", "__type() members are pointers")
                fields[f"{m.name}_size"] = btf.sizeof(ptr.type_id)
            elif m.name == "values":
                arr = btf.resolve(m.type_id)
                ptr = btf.resolve(arr.type_id) if isinstance(arr, bt.Array) else None
                if not isinstance(ptr, bt.Ptr):
                    raise self.fail(MapDefinitionError, f"{name}.values", "__array(values, ...) of map definitions")
                fields["inner"], _, _ = self._btf_map_def(btf, f"{name}.inner"[:_MAP_NAME_BYTES], ptr.type_id)
                values_at = m.bit_offset // 8
        if "type" not in fields:
            raise self.fail(MapDefinitionError, name, "the map definition has no type")
        if fields["type"] == MapType.BPF_MAP_TYPE_PERF_EVENT_ARRAY:
            from pybpfguard.bpf.cpus import possible_cpus

            fields.setdefault("key_size", 4)
            fields["key_size"] = fields["key_size"] or 4
            fields["value_size"] = fields["value_size"] or 4
            fields["max_entries"] = fields.get("max_entries") or possible_cpus()
        fields.setdefault("max_entries", 0)
        fields["name"] = _sanitize(fields["name"])
        return self._spec(name, **fields), pinning, values_at

    def _uint_field(self, btf: Spec, name: str, member: bt.Member) -> int:
        ptr = btf.resolve(member.type_id)
        arr = btf.resolve(ptr.type_id) if isinstance(ptr, bt.Ptr) else None
        if not isinstance(arr, bt.Array):
            raise self.fail(MapDefinitionError, f"{name}.{member.name}", "__uint() members are pointers to arrays")
        return arr.nelems
