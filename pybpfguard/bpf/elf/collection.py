"""``Collection``: a clang-built object opened, inspected, configured, loaded, attached and pinned, as
libbpf's ``bpf_object`` does it (and bpftool's ``prog loadall``)::

    with Collection.open("prog.o") as coll:
        coll.set_constant("target_pid", 42)       # .rodata, before load
        coll.load()
        coll.maps["counts"]                        # the loaded Map
        links = coll.attach(cgroup="/sys/fs/cgroup/x")

Maps are created first (BTF maps pinned by name reuse the pin under *pin_root*), global data written and
``.rodata`` frozen; the object's BTF is loaded once and each program gets its func_info and line_info;
map references travel as ``fd_array`` indexes. Errors are the library's: ELFError subclasses for the
object, MapSpecError, VerifierError, SyscallError for the kernel, NotSupportedError for CO-RE when the
resolver is absent.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pybpfguard.bpf import _sys
from pybpfguard.bpf import link as _link
from pybpfguard.bpf.btf import types as bt
from pybpfguard.bpf.btf.kinds import BtfKind
from pybpfguard.bpf.btf.program_btf import load_btf
from pybpfguard.bpf.elf.btffix import fixup_btf
from pybpfguard.bpf.elf.errors import ConstantError
from pybpfguard.bpf.elf.linker import LinkedProgram, link_program
from pybpfguard.bpf.elf.object import MapDef, MapOrigin, ObjectFile, Pinning, ProgramDef
from pybpfguard.bpf.elf.sections import AttachKind
from pybpfguard.bpf.errors import BPFError, NotSupportedError, VerifierError
from pybpfguard.bpf.maps.map import Map
from pybpfguard.bpf.program import Program, ProgramSpec
from pybpfguard.bpf.types import AttachType, ProgType

if TYPE_CHECKING:
    from pybpfguard.bpf.btf.spec import Spec

DEFAULT_PIN_ROOT = "/sys/fs/bpf"  # libbpf's default for maps pinned by name
_FUNC_INFO = struct.Struct("<II")
_LINE_INFO = struct.Struct("<IIII")


@dataclass(frozen=True, slots=True)
class ProgramView:
    """What ``obj show`` prints for a program: section, type, attach type and target, instruction count
    (after subprograms are appended, as the kernel receives it)."""

    name: str
    section: str
    prog_type: ProgType
    attach_type: AttachType | None
    target: str
    insn_count: int


@dataclass(frozen=True, slots=True)
class _ObjBTF:
    """One program's view of the loaded object BTF (pybpfguard.bpf.program.ProgBTF)."""

    fd: _sys.Fd
    func_info: bytes
    line_info: bytes
    func_info_rec_size: int = _FUNC_INFO.size

    @property
    def func_info_cnt(self) -> int:
        return len(self.func_info) // _FUNC_INFO.size


class Collection:
    """An opened object (``.object``), its loaded maps and programs once :meth:`load` ran. A context
    manager; ``close()`` closes every fd and link it owns (pins stay)."""

    def __init__(self, obj: ObjectFile) -> None:
        self.object = obj
        self._rodata: dict[str, bytearray] = {
            m.name: bytearray(m.data) for m in obj.maps.values() if m.origin == MapOrigin.DATA and m.data
        }
        self.maps: dict[str, Map] = {}
        self.programs: dict[str, Program] = {}
        self.links: dict[str, _link.Link] = {}
        self._btf_fd: _sys.Fd | None = None
        self._core_candidates: dict[int, list[int]] = {}  # CO-RE: local type id -> kernel candidates

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Collection:
        """Read the object at *path* (nothing is loaded). Raises OSError, ELFError subclasses."""
        return cls(ObjectFile.read(path))

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> Collection:
        return cls(ObjectFile.from_bytes(data, name))

    # -- inspection ------------------------------------------------------------------------------------
    @property
    def map_defs(self) -> dict[str, MapDef]:
        """The maps of the object by name (``counts``, ``.rodata``), with their specs and pinning."""
        return self.object.maps

    def program_views(self) -> list[ProgramView]:
        """Every program in section order, with the instruction count the kernel will receive."""
        index = {name: i for i, name in enumerate(self.object.maps)}
        views = []
        for prog in self.object.programs.values():
            linked = link_program(self.object, prog, index, ksym_id=lambda _name, _is_func: 0)
            d = prog.section.definition
            views.append(ProgramView(prog.name, prog.section.section, d.prog_type, d.attach_type,
                                     prog.section.target, linked.insn_count))
        return views

    # -- constants ---------------------------------------------------------------------------------------
    def constants(self) -> dict[str, tuple[str, int, int]]:
        """``.rodata*`` variables: name -> (section, byte offset, size), from the object's BTF DATASECs."""
        btf = self.object.btf
        found: dict[str, tuple[str, int, int]] = {}
        if btf is None:
            return found
        for sec_id in range(1, btf.type_count):
            typ = btf.type_by_id(sec_id)
            if typ.kind != BtfKind.BTF_KIND_DATASEC or typ.name not in self._rodata:
                continue
            assert isinstance(typ, bt.Datasec)
            for var in typ.vars:
                name = btf.type_by_id(var.type_id).name
                if name in self.object.symbol_offsets:
                    found[name] = (typ.name, self.object.symbol_offsets[name], var.size)
        return found

    def set_constant(self, name: str, value: int | bytes) -> None:
        """Set the ``const volatile`` variable *name* in ``.rodata`` before :meth:`load` (the skeleton's
        ``rodata->name = value``). An int is written little-endian in the variable's size (signed if
        negative); bytes must have that size. Raises ConstantError naming the variable."""
        if self.programs or self.maps:
            raise ConstantError(self.object.path, name, "the collection is loaded: .rodata is frozen")
        where = self.constants().get(name)
        if where is None:
            known = ", ".join(sorted(self.constants())) or "none"
            raise ConstantError(self.object.path, name, f"no such .rodata variable (known: {known})")
        section, offset, size = where
        if isinstance(value, int):
            try:
                raw = value.to_bytes(size, "little", signed=value < 0)
            except OverflowError:
                raise ConstantError(self.object.path, name, f"{value} does not fit in {size} bytes") from None
        else:
            raw = bytes(value)
            if len(raw) != size:
                raise ConstantError(self.object.path, name, f"{len(raw)} bytes given, the variable has {size}")
        self._rodata[section][offset : offset + size] = raw

    # -- load ----------------------------------------------------------------------------------------------
    def load(self, *, pin_root: str | os.PathLike[str] | None = None, log_level: int = 0,
             kernel_btf: Spec | None = None) -> None:
        """Create the maps, load the object BTF and every program. Maps with ``pinning`` by name reuse
        the pin ``<pin_root>/<name>`` (``/sys/fs/bpf`` by default) or are pinned there. On failure every
        object created so far is closed before the error propagates."""
        try:
            self._create_maps(os.fspath(pin_root) if pin_root is not None else DEFAULT_PIN_ROOT)
            obj = self.object
            if obj.btf_raw is not None:
                blob = fixup_btf(obj.btf_raw, obj.section_sizes, obj.symbol_offsets, obj.path)
                self._btf_fd = load_btf(blob, what=f"{obj.path} .BTF")
            index = {name: i for i, name in enumerate(obj.maps)}
            fd_array = [self.maps[name].fd for name in obj.maps]
            for prog in obj.programs.values():
                self.programs[prog.name] = self._load_program(prog, index, fd_array, log_level, kernel_btf)
        except BaseException:
            self.close()
            raise

    def _create_maps(self, pin_root: str) -> None:
        for mdef in self.object.maps.values():
            path = os.path.join(pin_root, mdef.name)
            if mdef.pinning == Pinning.BY_NAME and os.path.exists(path):
                self.maps[mdef.name] = Map.from_pinned(path, mdef.spec)
                continue
            m = Map.create(mdef.spec)
            self.maps[mdef.name] = m
            if mdef.origin == MapOrigin.DATA:
                data = self._rodata.get(mdef.name)
                if data is not None:
                    m.update_elem(0, bytes(data))
                if mdef.frozen:
                    m.freeze()
            if mdef.pinning == Pinning.BY_NAME:
                m.pin(path)
        for mdef in self.object.maps.values():
            for slot, inner in mdef.init_values:
                self.maps[mdef.name].update_elem(slot, self.maps[inner])

    def _load_program(self, prog: ProgramDef, index: dict[str, int], fd_array: Sequence[_sys.Fd],
                      log_level: int, kernel_btf: Spec | None) -> Program:
        linked = link_program(self.object, prog, index,
                              ksym_id=lambda name, is_func: _ksym_id(name, is_func, kernel_btf))
        poisoned: dict[int, str] = {}
        code = _apply_core(self.object, linked, kernel_btf, self._core_candidates, poisoned)
        d = prog.section.definition
        target = prog.section.target if d.attach in (AttachKind.TRACING, AttachKind.LSM) or (
            d.attach_type == AttachType.BPF_TRACE_ITER) else ""
        spec = ProgramSpec(prog.name[:15], d.prog_type, code, self.object.license or "GPL",
                           expected_attach_type=d.attach_type, attach_to=target, prog_flags=d.prog_flags)
        prog_btf = None
        if self._btf_fd is not None and linked.func_info:
            prog_btf = _ObjBTF(
                self._btf_fd,
                b"".join(_FUNC_INFO.pack(r.insn_off, r.type_id) for r in linked.func_info),
                b"".join(_LINE_INFO.pack(r.insn_off, r.file_name_off, r.line_off, r.line_col)
                         for r in linked.line_info),
            )
        try:
            return Program.load(spec, log_level=log_level, kernel_btf=kernel_btf, prog_btf=prog_btf,
                                fd_array=fd_array)
        except VerifierError as err:
            if err.insn_index in poisoned:  # libbpf's poison call: the verifier names only the slot
                err.add_note(f"insn {err.insn_index} is a CO-RE relocation this kernel cannot satisfy: "
                             f"{poisoned[err.insn_index]} ({source_line(self.object, linked, err.insn_index)})")
            raise

    # -- attach, pin, close ------------------------------------------------------------------------------
    def attach(self, *, cgroup: str | os.PathLike[str] | None = None, ifindex: int | None = None,
               only: Sequence[str] | None = None) -> dict[str, _link.Link]:
        """Attach every loaded program (or those named in *only*) by its section: tracing, LSM, raw and
        classic tracepoints need nothing more; cgroup programs need *cgroup*, XDP *ifindex*; socket
        filters and iterators are left to the caller. Returns name -> Link (also kept in ``.links``).
        Raises ValueError when a needed target is missing."""
        made: dict[str, _link.Link] = {}
        for prog in self.object.programs.values():
            if only is not None and prog.name not in only:
                continue
            loaded = self.programs[prog.name]
            kind, target = prog.section.definition.attach, prog.section.target
            if kind == AttachKind.TRACING:
                made[prog.name] = _link.attach_tracing(loaded)
            elif kind == AttachKind.LSM:
                made[prog.name] = _link.attach_lsm(loaded)
            elif kind == AttachKind.RAW_TRACEPOINT:
                made[prog.name] = _link.attach_raw_tracepoint(loaded, target)
            elif kind == AttachKind.TRACEPOINT:
                category, _, event = target.partition("/")
                made[prog.name] = _link.attach_tracepoint(loaded, category, event)
            elif kind == AttachKind.CGROUP:
                if cgroup is None:
                    raise ValueError(f"program {prog.name} ({prog.section.section}) needs a cgroup to attach to")
                made[prog.name] = _link.attach_cgroup(loaded, cgroup)
            elif kind == AttachKind.XDP:
                if ifindex is None:
                    raise ValueError(f"program {prog.name} (xdp) needs an interface index to attach to")
                made[prog.name] = _link.attach_xdp(loaded, ifindex)
        self.links.update(made)
        return made

    def pin(self, directory: str | os.PathLike[str]) -> None:
        """Pin every program at ``<directory>/<program>`` and every map at ``<directory>/maps/<map>``
        (the map's kernel name with '.' as '_', e.g. ``obj_rodata``: bpffs refuses dots, as libbpf's
        sanitize_pin_path knows); *directory* must be on a bpffs."""
        maps_dir = os.path.join(directory, "maps")
        os.makedirs(maps_dir, exist_ok=True)
        for name, prog in self.programs.items():
            prog.pin(os.path.join(directory, name))
        for name, m in self.maps.items():
            m.pin(os.path.join(maps_dir, self.object.maps[name].spec.name.replace(".", "_")))

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        for prog in self.programs.values():
            prog.close()
        for m in self.maps.values():
            m.close()
        if self._btf_fd is not None:
            self._btf_fd.close()
        self.links, self.programs, self.maps, self._btf_fd = {}, {}, {}, None

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ksym_id(name: str, is_func: bool, kernel_btf: Spec | None) -> int:
    """The vmlinux BTF id of kernel function (a kfunc) or variable (a per-CPU ``__ksym``) *name*.
    Raises TypeNotFoundError."""
    from pybpfguard.bpf.btf.spec import load_vmlinux

    spec = kernel_btf if kernel_btf is not None else load_vmlinux()
    return spec.find_id(BtfKind.BTF_KIND_FUNC if is_func else BtfKind.BTF_KIND_VAR, name)


def _apply_core(obj: ObjectFile, linked: LinkedProgram, kernel_btf: Spec | None,
                candidates: dict[int, list[int]], poisoned: dict[int, str]) -> bytes:
    """The program's code with its CO-RE relocations resolved against *kernel_btf* (vmlinux by default)
    by pybpfguard.bpf.elf.core; *candidates* is the object's shared cache of target types, *poisoned*
    receives ``{slot: field}`` for each relocation this kernel cannot satisfy. Raises NotSupportedError
    when that module is absent, CoreReloError (with the C source line) when a relocation is malformed."""
    if not linked.core_relos:
        return bytes(linked.code)
    try:
        from pybpfguard.bpf.elf import core
    except ImportError as err:
        raise NotSupportedError(f"CO-RE relocations (program {linked.name})",
                                reason=f"the resolver pybpfguard.bpf.elf.core is not available ({err})") from err
    from pybpfguard.bpf.asm import decode, finalize
    from pybpfguard.bpf.btf.spec import load_vmlinux

    assert obj.btf is not None  # .BTF.ext records exist only with .BTF
    relos = [core.CoreRelo(r.insn_off, r.type_id, r.access, r.kind) for r in linked.core_relos]
    target = kernel_btf if kernel_btf is not None else load_vmlinux()
    try:
        insns = core.apply_core_relos(decode(bytes(linked.code)), relos, obj.btf, target, candidates=candidates,
                                      poisoned=poisoned)
    except core.CoreReloError as err:
        if not err.source_line:
            err.source_line = source_line(obj, linked, err.insn_index)
        raise
    return finalize(insns)


def source_line(obj: ObjectFile, linked: LinkedProgram, slot: int) -> str:
    """``"file.c:42: the C text"`` of the line_info record covering *slot* of *linked*, or ""."""
    record = None
    for r in linked.line_info:
        if r.insn_off > slot:
            break
        record = r
    if record is None or obj.btf is None:
        return ""
    try:
        name = os.path.basename(obj.btf.name_of(record.file_name_off))
        return f"{name}:{record.line_col >> 10}: {obj.btf.name_of(record.line_off).strip()}"
    except BPFError:
        return ""
