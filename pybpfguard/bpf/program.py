"""Programs: ``ProgramSpec`` (what to load, a frozen value) and ``Program`` (a loaded program owning its fd).

Loading follows one rule: the verifier log never decides the outcome (tests/program/test_program_load.py). The
first attempt runs without a log; only a failure is retried with log level 1 and a buffer of at least
64 KiB, grown to the kernel's ``log_true_size`` (Linux 6.4; doubled on older kernels) on ENOSPC. A
rejection raises :class:`~pybpfguard.bpf.errors.VerifierError` whose ``str()`` is one line and whose
``.log`` is the whole log. Loads refused because BPF LSM cannot work here raise
:class:`~pybpfguard.bpf.lsm_support.BPFLSMUnavailable` (tests/program/test_program_load.py).
"""

from __future__ import annotations

import ctypes
import errno as _errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pybpfguard.bpf import _sys, asm
from pybpfguard.bpf._sys.prog import ProgInfo, get_fd_by_id, obj_get_info_by_fd
from pybpfguard.bpf.asm import Insn, finalize
from pybpfguard.bpf.errors import InvalidArgumentError, SyscallError, VerifierError, from_errno
from pybpfguard.bpf.lsm_support import lsm_refusal, trampoline_refusal
from pybpfguard.bpf.types import AttachType, ProgType
from pybpfguard.bpf.verifier_log import summarize

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from pybpfguard.bpf.btf.spec import Spec as BtfSpec

LOG_SIZE_MIN_BYTES = 64 * 1024
BPF_LINE_INFO_REC_SIZE = 16  # struct bpf_line_info: insn_off, file_name_off, line_off, line_col
LOG_SIZE_MAX_BYTES = (2**32 - 1) >> 2  # kernel/bpf/log.c bpf_vlog_init: larger log_size is EINVAL

# The libbpf section prefix (pybpfguard.bpf.btf.attach.BtfAttach) whose BTF target each attach type names.
_BTF_ATTACH_KIND: dict[AttachType, str] = {
    AttachType.BPF_TRACE_RAW_TP: "tp_btf",
    AttachType.BPF_LSM_MAC: "lsm",
    AttachType.BPF_LSM_CGROUP: "lsm",
    AttachType.BPF_TRACE_FENTRY: "fentry",
    AttachType.BPF_TRACE_FEXIT: "fexit",
    AttachType.BPF_MODIFY_RETURN: "fmod_ret",
    AttachType.BPF_TRACE_ITER: "iter",
}
# Program kinds that run through a BPF trampoline (kernel/bpf/trampoline.c).
_TRAMPOLINE_ATTACH = {AttachType.BPF_TRACE_FENTRY, AttachType.BPF_TRACE_FEXIT, AttachType.BPF_MODIFY_RETURN}


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    """What to load: deterministic data, no kernel.

    - ``insns``: a sequence of ``pybpfguard.bpf.asm`` ``Insn`` values (finalized at load) or the raw
      little-endian instruction bytes (8 per slot).
    - ``expected_attach_type``: required by tracing, LSM and cgroup_sock_addr programs, among others.
    - ``attach_btf_id``, or ``attach_to``: the target name without prefix (``"sched_process_exec"``,
      ``"file_open"``, ``"do_unlinkat"``), resolved through kernel BTF at load by the attach type.
    - ``prog_flags``: ``BPF_F_*`` load flags (include/uapi/linux/bpf.h), e.g. ``BPF_F_SLEEPABLE``.

    Program BTF and the maps of an ``fd_array`` are kernel objects, so they are given to
    :meth:`Program.load`, not kept here.
    """

    name: str
    prog_type: ProgType
    insns: Sequence[Insn] | bytes
    license: str = "GPL"
    expected_attach_type: AttachType | None = None
    attach_btf_id: int = 0
    attach_to: str = ""
    prog_flags: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.insns, (bytes, tuple)):
            object.__setattr__(self, "insns", tuple(self.insns))
        if self.attach_to and self.expected_attach_type not in _BTF_ATTACH_KIND:
            raise InvalidArgumentError(
                f"program {self.name}: attach_to={self.attach_to!r} needs an expected_attach_type "
                f"that names a BTF target ({', '.join(a.name for a in _BTF_ATTACH_KIND)})"
            )

    def code(self) -> bytes:
        """The instruction bytes the kernel receives (``finalize()`` applied to ``Insn`` values)."""
        if isinstance(self.insns, bytes):
            return self.insns
        return finalize(self.insns)

    def resolve_attach_btf_id(self, kernel_btf: BtfSpec | None = None) -> int:
        """``attach_btf_id`` as given, or the BTF id of ``attach_to`` in *kernel_btf* (vmlinux by default).
        Raises TypeNotFoundError naming the symbol this kernel lacks."""
        if self.attach_btf_id or not self.attach_to:
            return self.attach_btf_id
        from pybpfguard.bpf.btf.spec import load_vmlinux

        spec = kernel_btf if kernel_btf is not None else load_vmlinux()
        assert self.expected_attach_type is not None  # checked in __post_init__
        return spec.attach_btf_id_for(_BTF_ATTACH_KIND[self.expected_attach_type], self.attach_to)


class ProgBTF(Protocol):
    """Program BTF as ``pybpfguard.bpf.btf.ProgramBTF`` provides it: the loaded blob's ``fd`` and the
    packed ``struct bpf_func_info`` records (include/uapi/linux/bpf.h: ``insn_off``, ``type_id``).
    An object may also offer ``line_info`` (packed 16-byte ``struct bpf_line_info`` records), passed
    along so a verifier error shows the source line."""

    @property
    def fd(self) -> _sys.Fd: ...
    @property
    def func_info(self) -> bytes: ...
    @property
    def func_info_rec_size(self) -> int: ...
    @property
    def func_info_cnt(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ProgramInfo:
    """A loaded program as the kernel describes it (struct bpf_prog_info).

    ``tag``: the 8-byte program tag as 16 hex digits (as bpftool prints it); ``load_time_ns``: ns since
    boot (CLOCK_BOOTTIME); ``run_time_ns``/``run_cnt``: totals, counted only while BPF stats are enabled.
    """

    id: int
    name: str
    tag: str
    prog_type: ProgType | int
    load_time_ns: int
    created_by_uid: int
    xlated_prog_len_bytes: int
    verified_insns: int
    btf_id: int
    attach_btf_id: int
    run_time_ns: int
    run_cnt: int


class Program:
    """A loaded program. Owns its fd (taken); a context manager; ``close()`` is idempotent.

    Closing unloads the program unless a link, an attachment or a pin still holds it.
    """

    __slots__ = ("fd", "spec", "verifier_log")

    def __init__(self, spec: ProgramSpec, fd: _sys.Fd, verifier_log: str = "") -> None:
        self.spec = spec
        self.fd = fd
        self.verifier_log = verifier_log

    @classmethod
    def load(
        cls,
        spec: ProgramSpec,
        *,
        log_level: int = 0,
        log_size_bytes: int = LOG_SIZE_MIN_BYTES,
        kernel_btf: BtfSpec | None = None,
        prog_btf: ProgBTF | None = None,
        fd_array: Sequence[_sys.Fd] = (),
    ) -> Program:
        """BPF_PROG_LOAD *spec*; return the owned :class:`Program`.

        With *log_level* 0 the first attempt has no log and only a failure is retried with level 1. A
        *log_level* > 0 asks for the log on the first attempt too (kept in ``.verifier_log``). The log
        buffer starts at *log_size_bytes* (at least 64 KiB on a retry after failure) and grows on ENOSPC.
        *prog_btf* (borrowed) supplies program BTF and func_info (needed for callbacks and global
        functions). *fd_array* (borrowed) are the maps instructions name by index (``BPF_PSEUDO_MAP_IDX``).
        Raises VerifierError (rejected, with ``.log`` and ``.insn_index``), BPFLSMUnavailable (an LSM
        program this kernel will not run), SyscallError subclasses with a hint (empty log), and
        TypeNotFoundError when ``attach_to`` names nothing in kernel BTF.
        """
        code = spec.code()
        attach_btf_id = spec.resolve_attach_btf_id(kernel_btf)
        extra = _load_extra(prog_btf, fd_array)
        quiet_failure: SyscallError | None = None
        if log_level == 0:
            try:
                return cls(spec, _prog_load(spec, code, attach_btf_id, extra))
            except SyscallError as err:
                quiet_failure = err  # repeated below with the log on; that attempt reports the failure
        level = max(1, log_level)
        size = max(log_size_bytes, LOG_SIZE_MIN_BYTES) if log_level == 0 else log_size_bytes
        while True:
            buf = ctypes.create_string_buffer(size)
            attrs: list[_sys.ProgLoadAttr] = []
            try:
                fd = _prog_load(spec, code, attach_btf_id, extra, log_level=level, log_buf=buf, attr_out=attrs)
            except SyscallError as err:
                if err.errno == _errno.ENOSPC and size < LOG_SIZE_MAX_BYTES:
                    needed = attrs[0].log_true_size if attrs else 0
                    size = min(needed if needed > size else size * 2, LOG_SIZE_MAX_BYTES)
                    continue
                rejection = _rejection(spec, code, err, _log_text(buf))
                if quiet_failure is not None and quiet_failure.errno != err.errno:
                    rejection.add_note(f"the first attempt, without a log, failed differently: {quiet_failure}")
                raise rejection from err
            return cls(spec, fd, _log_text(buf))

    @classmethod
    def from_id(cls, spec: ProgramSpec, prog_id: int) -> Program:
        """Open the loaded program with id *prog_id* (BPF_PROG_GET_FD_BY_ID); *spec* describes it."""
        return cls(spec, get_fd_by_id(_sys.BpfCmd.BPF_PROG_GET_FD_BY_ID, prog_id, f"prog {spec.name}"))

    @property
    def name(self) -> str:
        return self.spec.name

    def test_run(
        self, data: bytes = b"", *, repeat: int = 1, ctx: bytes | None = None, data_out_size: int = 0
    ) -> _sys.TestRunResult:
        """BPF_PROG_TEST_RUN on *data* (a packet: >= 14 bytes for socket filters, ETH_HLEN) and/or *ctx*,
        *repeat* times (RAW_TRACEPOINT and SYSCALL programs take repeat=0 only). Returns retval (u32),
        mean ``duration_ns`` per run and up to *data_out_size* bytes of the packet afterwards."""
        return _sys.prog_test_run(self.fd, data, repeat=repeat, ctx_in=ctx, data_out_size=data_out_size)

    def info(self) -> ProgramInfo:
        """BPF_OBJ_GET_INFO_BY_FD: id, name, tag, type and counters as the kernel reports them."""
        raw = obj_get_info_by_fd(self.fd, ProgInfo())
        try:
            prog_type: ProgType | int = ProgType(raw.type)
        except ValueError:
            prog_type = raw.type  # a type newer than our table
        return ProgramInfo(
            id=raw.id,
            name=raw.name.decode(errors="replace"),
            tag=bytes(raw.tag).hex(),
            prog_type=prog_type,
            load_time_ns=raw.load_time,
            created_by_uid=raw.created_by_uid,
            xlated_prog_len_bytes=raw.xlated_prog_len,
            verified_insns=raw.verified_insns,
            btf_id=raw.btf_id,
            attach_btf_id=raw.attach_btf_id,
            run_time_ns=raw.run_time_ns,
            run_cnt=raw.run_cnt,
        )

    def pin(self, path: str | os.PathLike[str]) -> None:
        """BPF_OBJ_PIN the program at *path* (on a bpffs); the pin keeps it loaded after close."""
        _sys.obj_pin(self.fd, path)

    def close(self) -> None:
        self.fd.close()

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.fd.closed else f"fd {self.fd.raw}"
        return f"<Program {self.name} {self.spec.prog_type.name} {state}>"


@dataclass(frozen=True, slots=True)
class _LoadExtra:
    """ProgLoadAttr fields for program BTF and fd_array, and the buffers they point into (kept alive)."""

    fields: dict[str, int]
    buffers: tuple[object, ...] = ()


def _load_extra(prog_btf: ProgBTF | None, fd_array: Sequence[_sys.Fd]) -> _LoadExtra:
    fields: dict[str, int] = {}
    buffers: list[object] = []
    if prog_btf is not None:
        info = ctypes.create_string_buffer(prog_btf.func_info, len(prog_btf.func_info))
        buffers.append(info)
        fields.update(
            prog_btf_fd=prog_btf.fd.raw,
            func_info=ctypes.addressof(info),
            func_info_rec_size=prog_btf.func_info_rec_size,
            func_info_cnt=prog_btf.func_info_cnt,
        )
        line_info: bytes = getattr(prog_btf, "line_info", b"")
        if line_info:
            lines = ctypes.create_string_buffer(line_info, len(line_info))
            buffers.append(lines)
            fields.update(
                line_info=ctypes.addressof(lines),
                line_info_rec_size=BPF_LINE_INFO_REC_SIZE,
                line_info_cnt=len(line_info) // BPF_LINE_INFO_REC_SIZE,
            )
    if fd_array:
        fds = (ctypes.c_int32 * len(fd_array))(*(fd.raw for fd in fd_array))
        buffers.append(fds)
        fields["fd_array"] = ctypes.addressof(fds)
    return _LoadExtra(fields, tuple(buffers))


def _prog_load(spec: ProgramSpec, code: bytes, attach_btf_id: int, extra: _LoadExtra, **log: object) -> _sys.Fd:
    return _sys.prog_load(
        int(spec.prog_type),
        code,
        spec.license,
        prog_name=spec.name,
        expected_attach_type=int(spec.expected_attach_type or 0),
        attach_btf_id=attach_btf_id,
        prog_flags=spec.prog_flags,
        **extra.fields,
        **log,  # type: ignore[arg-type]
    )


def _log_text(buf: ctypes.Array[ctypes.c_char]) -> str:
    return buf.value.decode(errors="replace")


def _slot_text(code: bytes, index: int) -> str:
    """Our disassembly of the instruction at slot *index* ("" when out of range or undecodable)."""
    if not 0 <= index < len(code) // 8:
        return ""
    width = 16 if code[index * 8] == 0x18 else 8  # ld_imm64 takes two slots
    return asm.disassemble(code[index * 8 : index * 8 + width], lenient=True, labels=False).strip()


def _rejection(spec: ProgramSpec, code: bytes, err: SyscallError, log: str) -> Exception:
    """The error for a load that failed with *err* even with the log on."""
    if spec.prog_type == ProgType.BPF_PROG_TYPE_LSM:
        unavailable = lsm_refusal(err.errno, log)
        if unavailable is not None:
            return unavailable
    hint = ""
    if spec.prog_type in (ProgType.BPF_PROG_TYPE_LSM, ProgType.BPF_PROG_TYPE_EXT) or (
        spec.expected_attach_type in _TRAMPOLINE_ATTACH
    ):
        hint = trampoline_refusal(err.errno, log) or ""
    if not log.strip():
        return from_errno("BPF_PROG_LOAD", err.errno, hint, detail=f"{spec.name}: the verifier log is empty")
    summary = summarize(log)
    where = ""
    if summary.insn_index is not None:
        text = _slot_text(code, summary.insn_index) or summary.insn_text
        where = f"at insn {summary.insn_index} ({text}): " if text else f"at insn {summary.insn_index}: "
    detail = f"{where}{'; '.join(summary.last_lines)} ({summary.omitted} more lines in .log)"
    return VerifierError(
        "BPF_PROG_LOAD", err.errno, log, prog_name=spec.name, insn_index=summary.insn_index, summary=detail, hint=hint
    )
