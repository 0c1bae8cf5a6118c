"""PT_INTERP of an executable (pybpfguard.agent.elfinterp): real binaries, hand-made ELF headers of both classes
and byte orders, and files that are not (or not well-formed) ELF."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from pybpfguard.agent.elfinterp import PT_INTERP, elf_interpreter, interpreter_key
from pybpfguard.agent.paths import inode_key


def interp_of(path: Path) -> bytes | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        return elf_interpreter(fd)
    finally:
        os.close(fd)


def elf(cls: int, order: str, interp: bytes | None, *, size: int | None = None) -> bytes:
    """A minimal ELF file: header, one program header (PT_INTERP when *interp*, else PT_LOAD), the path."""
    ehdr_size, phent = (64, 56) if cls == 2 else (52, 32)
    data = interp + b"\0" if interp is not None else b""
    off = ehdr_size + phent
    ident = b"\x7fELF" + bytes([cls, 1 if order == "<" else 2, 1]) + bytes(9)
    if cls == 2:
        ehdr = ident + struct.pack(order + "HHIQQQIHHHHHH", 2, 62, 1, 0, ehdr_size, 0, 0, ehdr_size, phent, 1, 0, 0, 0)
        phdr = struct.pack(order + "IIQQQQQQ", PT_INTERP if interp is not None else 1, 4, off, 0, 0,
                           size if size is not None else len(data), len(data), 1)
    else:
        ehdr = ident + struct.pack(order + "HHIIIIIHHHHHH", 2, 3, 1, 0, ehdr_size, 0, 0, ehdr_size, phent, 1, 0, 0, 0)
        phdr = struct.pack(order + "IIIIIIII", PT_INTERP if interp is not None else 1, off, 0, 0,
                           size if size is not None else len(data), len(data), 4, 1)
    return ehdr + phdr + data


def test_a_dynamic_binary_names_its_loader_and_the_key_is_the_loaders_inode():
    interp = interp_of(Path(os.path.realpath("/bin/true")))
    assert interp is not None and interp.startswith(b"/")
    assert interpreter_key(os.getpid(), interp) == inode_key(os.stat(interp))


@pytest.mark.parametrize("cls", [1, 2], ids=["elf32", "elf64"])
@pytest.mark.parametrize("order", ["<", ">"], ids=["le", "be"])
def test_hand_made_headers_of_each_class_and_byte_order(tmp_path: Path, cls: int, order: str):
    f = tmp_path / "x"
    f.write_bytes(elf(cls, order, b"/lib/ld-test.so.1"))
    assert interp_of(f) == b"/lib/ld-test.so.1"
    f.write_bytes(elf(cls, order, None))
    assert interp_of(f) is None  # static


@pytest.mark.parametrize("content", [b"", b"#!/bin/sh\n", b"\x7fELF", b"\x7fELF\x03\x01" + bytes(58)],
                         ids=["empty", "script", "truncated", "bad-class"])
def test_not_elf_or_malformed_gives_none(tmp_path: Path, content: bytes):
    f = tmp_path / "x"
    f.write_bytes(content)
    assert interp_of(f) is None


def test_an_interpreter_path_longer_than_path_max_is_refused(tmp_path: Path):
    f = tmp_path / "x"
    f.write_bytes(elf(2, "<", b"/lib/ld.so", size=5000))
    assert interp_of(f) is None


def test_an_interpreter_that_does_not_resolve_gives_no_key():
    assert interpreter_key(os.getpid(), b"/nonexistent/ld.so") is None
    assert interpreter_key(0, b"/bin/true") is None


@pytest.mark.parametrize("size", range(52, 64))
def test_a_truncated_elf64_header_is_not_elf(tmp_path, size):
    """Any user can exec a file; a short ELF64 header must not raise (the exec guard would count every such
    exec as a handling error and a hook-error diag event, answered ALLOW: noise any user could raise at will)."""
    path = tmp_path / "short"
    path.write_bytes(elf(2, "<", b"/lib/ld.so")[:size])
    assert interp_of(path) is None
