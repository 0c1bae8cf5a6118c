"""Broken objects raise the loader's typed errors naming the section or symbol; the reader, fed mutated
objects, raises one of those errors or succeeds, never anything else."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpfguard.bpf.btf.errors import BTFError
from pybpfguard.bpf.elf import (
    BTFExtError,
    Collection,
    ELFError,
    ELFFormatError,
    ObjectFile,
    RelocationError,
    UnknownSectionError,
)
from pybpfguard.bpf.elf.btfext import parse_btf_ext
from pybpfguard.bpf.errors import BPFError, NotSupportedError

pytestmark = pytest.mark.kernel


def test_a_truncated_object_is_a_format_error(compile_c):
    data = compile_c("counter").read_bytes()
    for cut in (0, 10, 63, len(data) // 2, len(data) - 1):
        with pytest.raises(ELFFormatError):
            ObjectFile.from_bytes(data[:cut], "counter.o")


def test_not_an_elf_file_says_so(tmp_path):
    (tmp_path / "x.o").write_text("hello")
    with pytest.raises(ELFFormatError, match="not an ELF"):
        Collection.open(tmp_path / "x.o")


def test_an_unknown_section_names_it(compile_c):
    with pytest.raises(UnknownSectionError, match="frobnicate/now"):
        Collection.open(compile_c("broken_section"))


def test_a_relocation_against_an_undefined_symbol_names_it(compile_c):
    """An extern the kernel's BTF does not have either (``nowhere``) fails the load, naming it."""
    with Collection.open(compile_c("extern_var")) as coll, pytest.raises(RelocationError, match="nowhere"):
        coll.load()


def test_a_relocation_against_a_missing_symbol_index(compile_c):
    data = bytearray(compile_c("counter").read_bytes())
    obj = ObjectFile.from_bytes(bytes(data))
    assert obj.code_sections
    # .rel<section> entries are {r_offset u64, r_info u64}; point the first at a symbol index past the table
    import io

    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(bytes(data)))
    rel = next(s for s in elf.iter_sections() if s.name == ".relsocket")
    struct.pack_into("<Q", data, rel["sh_offset"] + 8, (0xFFFF << 32) | 1)
    with pytest.raises(RelocationError, match="missing symbol"):
        ObjectFile.from_bytes(bytes(data), "counter.o")


def test_btf_ext_garbage_is_a_btf_ext_error():
    strings = {0: "", 1: "socket"}.__getitem__
    for blob in (b"", b"\x9f\xeb", struct.pack("<HBBIIIII", 0x1234, 1, 0, 24, 0, 0, 0, 0),
                 struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 100, 0, 0) + bytes(8),
                 struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 12, 0, 0) + struct.pack("<III", 8, 1, 5)):
        with pytest.raises(BTFExtError):
            parse_btf_ext(blob, strings)


def test_co_re_relocations_need_the_resolver_or_load(compile_c):
    """With pybpfguard.bpf.elf.core present the CO-RE read loads and works; without it, a clear
    NotSupportedError names CO-RE and the program."""
    with Collection.open(compile_c("core_read")) as coll:
        assert coll.object.ext is not None and coll.object.ext.core_relos
        try:
            import pybpfguard.bpf.elf.core  # noqa: F401
        except ImportError:
            with pytest.raises(NotSupportedError, match=r"CO-RE.*core_len"):
                coll.load()
            return
        coll.load()
        assert coll.programs["core_len"].test_run(bytes(64)).retval == 1
        assert coll.maps[".bss"].lookup_elem(0) == struct.pack("<I", 50)


@pytest.fixture(scope="module")
def seed(compile_c) -> tuple[bytes, list[tuple[int, int]]]:
    """The calls object's bytes and the (offset, size) of each section, to aim mutations at."""
    import io

    from elftools.elf.elffile import ELFFile

    data = compile_c("calls").read_bytes()
    elf = ELFFile(io.BytesIO(data))
    sections = [s for s in elf.iter_sections() if s["sh_size"] and s["sh_type"] != "SHT_NOBITS"]
    spans = [(s["sh_offset"], s["sh_size"]) for s in sections]
    return data, spans


def _exercise(blob: bytes) -> None:
    """Everything the loader does short of the kernel: parse, lay out each program, list constants, fix BTF."""
    from pybpfguard.bpf.elf.btffix import fixup_btf

    obj = ObjectFile.from_bytes(blob, "mutant.o")
    coll = Collection(obj)
    coll.program_views()
    coll.constants()
    if obj.btf_raw is not None:
        fixup_btf(obj.btf_raw, obj.section_sizes, obj.symbol_offsets, obj.path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_objects_raise_typed_errors_or_parse(seed, data):
    raw, spans = seed
    blob = bytearray(raw)
    start, size = data.draw(st.sampled_from([(0, len(raw)), *spans]))  # the whole file or one section
    for _ in range(data.draw(st.integers(1, 8))):
        pos = start + data.draw(st.integers(0, size - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    try:
        _exercise(bytes(blob))
    except (ELFError, BTFError):
        pass
    except BPFError as err:  # another typed library error (a map spec the kernel rules refuse, ...)
        assert isinstance(err, BPFError)
