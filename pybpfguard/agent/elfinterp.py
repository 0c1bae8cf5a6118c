"""The ELF interpreter (``PT_INTERP``) of an executable, and the inode it names from a process's root.

The exec guard needs both: the kernel opens a dynamic executable's interpreter (``ld.so``) with
``open_exec`` from ``load_elf_binary`` (fs/binfmt_elf.c), which raises a second ``FAN_OPEN_EXEC_PERM``
for the same execve; ``bprm_check_security`` is not called for it. Layouts: include/uapi/linux/elf.h.
"""

from __future__ import annotations

import ctypes
import os
import struct

from pybpfguard.agent.paths import InodeKey, inode_key

__all__ = ["elf_interpreter", "interpreter_key"]

PT_INTERP = 3
PATH_MAX = 4096
_PHDRS_MAX = 65536  # the kernel refuses larger program header tables (load_elf_phdrs)
# (e_phoff, e_phentsize, e_phnum) and (p_type, p_offset, p_filesz) per ELF class (e_ident[EI_CLASS])
_EHDR = {1: ("I", 0x1C, 0x2A), 2: ("Q", 0x20, 0x36)}
_PHDR = {1: ("I", 0x04, 0x10), 2: ("Q", 0x08, 0x20)}
_EHDR_SIZE = {1: 52, 2: 64}  # sizeof(Elf32_Ehdr), sizeof(Elf64_Ehdr)

_libc = ctypes.CDLL(None, use_errno=True)
SYS_OPENAT2 = 437  # include/uapi/asm-generic/unistd.h (the same number on every architecture)
RESOLVE_IN_ROOT = 0x10  # include/uapi/linux/openat2.h


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def elf_interpreter(fd: int) -> bytes | None:
    """The ``PT_INTERP`` path of the ELF executable open as *fd* (read with ``pread``, the offset is left
    alone), or None: not ELF, static, or malformed. Raises OSError when the file cannot be read."""
    head = os.pread(fd, 64, 0)
    if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in _EHDR or head[5] not in (1, 2):
        return None
    if len(head) < _EHDR_SIZE[head[4]]:
        return None  # a header cut short (any user can exec such a file; the kernel refuses it: -ENOEXEC)
    order = "<" if head[5] == 1 else ">"
    word, phoff_at, phent_at = _EHDR[head[4]]
    (phoff,) = struct.unpack_from(order + word, head, phoff_at)
    phentsize, phnum = struct.unpack_from(order + "HH", head, phent_at)
    ptype_word, off_at, size_at = _PHDR[head[4]]
    if phnum == 0 or phentsize < size_at + struct.calcsize(ptype_word) or phentsize * phnum > _PHDRS_MAX:
        return None
    table = os.pread(fd, phentsize * phnum, phoff)
    for i in range(len(table) // phentsize):
        base = i * phentsize
        if struct.unpack_from(order + "I", table, base)[0] != PT_INTERP:
            continue
        (offset,) = struct.unpack_from(order + ptype_word, table, base + off_at)
        (size,) = struct.unpack_from(order + ptype_word, table, base + size_at)
        if not 2 <= size <= PATH_MAX:
            return None  # the kernel refuses it too (-ENOEXEC)
        path = os.pread(fd, size, offset)
        return path.split(b"\0", 1)[0] or None
    return None


def interpreter_key(pid: int, interpreter: bytes) -> InodeKey | None:
    """The inode *interpreter* names for process *pid*, resolved inside its root (``openat2`` with
    ``RESOLVE_IN_ROOT`` on ``/proc/<pid>/root``, so absolute symlinks stay in a chroot or container), or
    None when it cannot be resolved."""
    try:
        root = os.open(b"/proc/%d/root" % pid, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        how = _OpenHow(os.O_PATH | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT)
        fd = _libc.syscall(SYS_OPENAT2, root, interpreter, ctypes.byref(how), ctypes.sizeof(how))
        if fd < 0:
            return None
        try:
            return inode_key(os.fstat(fd))
        finally:
            os.close(fd)
    finally:
        os.close(root)
