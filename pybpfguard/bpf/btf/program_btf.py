"""A program's own BTF: one FUNC per function, loaded with BPF_BTF_LOAD, plus its ``func_info``.

The verifier needs func_info (and so a BTF fd) for any program with more than one function: callbacks
(``bpf_loop``, ``bpf_for_each_map_elem``: "missing btf func_info" otherwise) and global functions.
kernel/bpf/verifier.c check_btf_func: one record per subprogram, in instruction order, the first at
insn 0, each naming a FUNC whose FUNC_PROTO has as many params as the function uses. Global functions
(BTF_FUNC_GLOBAL) are verified on their own, from their BTF arguments: here every parameter is a
``long`` scalar and every function returns ``long``, which the kernel accepts for static and global
functions alike. The main program's params are not checked for non-EXT programs (R1 is the context).
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Sequence

import msgspec

from pybpfguard.bpf import _sys
from pybpfguard.bpf._sys.btf import BtfLoadAttr, btf_load
from pybpfguard.bpf.btf.errors import BTFError
from pybpfguard.bpf.btf.kinds import BtfFuncLinkage
from pybpfguard.bpf.btf.writer import BPF_FUNC_INFO_REC_SIZE, BTFBuilder, FuncInfo, encode_func_info
from pybpfguard.bpf.errors import InvalidArgumentError, SyscallError, VerifierError

LOG_MIN_BYTES = 64 * 1024
LOG_MAX_BYTES = 16 * 1024 * 1024  # the kernel's cap on a log buffer (UINT_MAX >> 8 is 16 MiB)


class BTFLoadError(VerifierError, BTFError):
    """The kernel's BTF verifier refused a blob: ``.log`` holds its whole log, ``str()`` its last line."""


class FuncDecl(msgspec.Struct, frozen=True, gc=False):
    """One function of a program: ``name`` (a C identifier), ``insn_off`` (its first instruction slot,
    8 bytes each; the main program is at 0), ``nargs`` (scalar ``long`` params, 0..5), ``linkage``."""

    name: str
    insn_off: int
    nargs: int = 0
    linkage: BtfFuncLinkage = BtfFuncLinkage.BTF_FUNC_STATIC


def build(funcs: Sequence[FuncDecl]) -> tuple[bytes, bytes]:
    """(BTF blob, func_info bytes) for *funcs*. Raises ValueError (bad names, offsets, arg counts)."""
    b = BTFBuilder()
    long_id = b.add_int("long", 8, signed=True)
    records = []
    for fn in sorted(funcs, key=lambda f: f.insn_off):
        if not 0 <= fn.nargs <= 5:
            raise InvalidArgumentError(f"function {fn.name}: {fn.nargs} args, BPF passes at most 5 (R1-R5)")
        proto = b.add_func_proto(long_id, [(f"arg{i}", long_id) for i in range(fn.nargs)])
        records.append(FuncInfo(fn.insn_off, b.add_func(fn.name, proto, fn.linkage)))
    return b.encode(), encode_func_info(records)


def load_btf(blob: bytes, *, what: str = "program BTF") -> _sys.Fd:
    """BPF_BTF_LOAD *blob*; return the owned fd. Loads without a log first; on failure loads again with
    log level 1 (>= 64 KiB, grown from ``btf_log_true_size`` or doubled on ENOSPC) so logging never decides
    the outcome. Raises BTFLoadError with the log, or the SyscallError (EPERM: no CAP_BPF)."""
    try:
        return btf_load(blob)
    except SyscallError as first:
        if first.errno == errno.EPERM:
            raise
        size = LOG_MIN_BYTES
        while True:
            buf = ctypes.create_string_buffer(size)
            attrs: list[BtfLoadAttr] = []
            try:
                return btf_load(blob, log_level=1, log_buf=buf, attr_out=attrs)  # passes only if flaky
            except SyscallError as err:
                if err.errno == errno.ENOSPC and size < LOG_MAX_BYTES:
                    size = min(LOG_MAX_BYTES, max(2 * size, attrs[0].btf_log_true_size + 1))
                    continue
                log = buf.value.decode(errors="replace")
                last = next((line for line in reversed(log.splitlines()) if line.strip()), "")
                raise BTFLoadError(
                    "BPF_BTF_LOAD", first.errno, log, prog_name=what, summary=f": {last}" if last else ""
                ) from err


class ProgramBTF:
    """A loaded program BTF and its func_info, for BPF_PROG_LOAD's ``prog_btf_fd``, ``func_info``,
    ``func_info_cnt`` and ``func_info_rec_size``. Owns ``fd`` (close it, or use ``with``); the kernel
    keeps its own reference once a program loaded with it, so closing after the load is fine."""

    __slots__ = ("_func_info_buf", "blob", "fd", "func_info", "func_info_cnt", "func_info_rec_size")

    def __init__(self, fd: _sys.Fd, blob: bytes, func_info: bytes) -> None:
        self.fd = fd
        self.blob = blob
        self.func_info = func_info
        self.func_info_rec_size = BPF_FUNC_INFO_REC_SIZE
        self.func_info_cnt = len(func_info) // BPF_FUNC_INFO_REC_SIZE
        self._func_info_buf = ctypes.create_string_buffer(func_info, len(func_info))  # pointed to by attrs

    @classmethod
    def load(cls, funcs: Sequence[FuncDecl]) -> ProgramBTF:
        """Build and load the BTF for *funcs* (see :func:`build`). Raises ValueError, BTFLoadError."""
        blob, func_info = build(funcs)
        return cls(load_btf(blob), blob, func_info)

    def prog_load_args(self) -> dict[str, object]:
        """The BPF_PROG_LOAD attr fields, for ``_sys.prog_load(..., **btf.prog_load_args())``.
        ``func_info`` is the address of a buffer owned by this object: keep it alive across the call."""
        return {
            "prog_btf_fd": self.fd.raw,
            "func_info": ctypes.addressof(self._func_info_buf),
            "func_info_cnt": self.func_info_cnt,
            "func_info_rec_size": self.func_info_rec_size,
        }

    def close(self) -> None:
        self.fd.close()

    def __enter__(self) -> ProgramBTF:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
