"""The library's exceptions. Callers branch on types and attributes, never on message text.

Every error the library raises derives from :class:`BPFError`. Syscall failures are
:class:`SyscallError` (also an ``OSError``, so ``.errno`` works as usual), built once per errno by
:func:`from_errno`, with a hint in parentheses where the cause is known.
"""

from __future__ import annotations

import errno as _errno
import os

ENOTSUPP = 524  # include/linux/errno.h: kernel-internal "operation not supported" (not in userspace errno)


class BPFError(Exception):
    """Root of every pybpfguard.bpf error."""


class InvalidArgumentError(BPFError, ValueError):
    """A value handed to the library is out of its domain (a size, a name, a count); the message names it."""


class WrongTypeError(BPFError, TypeError):
    """An object of the wrong kind was handed to the library (a program type for an attach, a buffer)."""


class SyscallError(BPFError, OSError):
    """A ``bpf()`` (or related) syscall failed.

    Attributes: ``errno`` (int), ``strerror``, ``cmd`` (the command's uapi name, e.g. ``"BPF_MAP_CREATE"``),
    ``hint`` (a known cause, or ``""``).
    """

    def __init__(self, cmd: str, err: int, hint: str = "", detail: str = "") -> None:
        strerror = "not supported (ENOTSUPP)" if err == ENOTSUPP else os.strerror(err)
        OSError.__init__(self, err, strerror)
        self.cmd = cmd
        self.hint = hint
        self.detail = detail

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, "ENOTSUPP" if self.errno == ENOTSUPP else str(self.errno))
        text = f"{self.cmd}: {name}: {self.strerror}"
        if self.detail:
            text += f": {self.detail}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.cmd, self.errno, self.hint, self.detail))


class PermissionDeniedError(SyscallError):
    """EPERM/EACCES: a missing capability, lockdown, or a kernel that forbids this object."""


class KeyNotFoundError(SyscallError, KeyError):
    """ENOENT from a map lookup/delete: the key is not in the map."""

    def __str__(self) -> str:
        return SyscallError.__str__(self)


class NoSpaceError(SyscallError):
    """ENOSPC/E2BIG: a map is full, or a buffer (verifier log, batch) was too small."""


class NotSupportedSyscallError(SyscallError):
    """EINVAL-free refusals that mean "this kernel cannot": ENOTSUPP (524), EOPNOTSUPP."""


class VerifierError(SyscallError):
    """The verifier rejected a program.

    ``str()`` is one line: command, program name, errno, the failing instruction and the verifier's last
    words. ``.log`` holds the whole log; ``.insn_index`` the failing instruction (or ``None``).
    """

    def __init__(
        self,
        cmd: str,
        err: int,
        log: str,
        *,
        prog_name: str = "",
        insn_index: int | None = None,
        summary: str = "",
        hint: str = "",
    ) -> None:
        super().__init__(cmd, err, hint, summary)
        self.log = log
        self.prog_name = prog_name
        self.insn_index = insn_index

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        who = f"{self.cmd} {self.prog_name}" if self.prog_name else self.cmd
        text = f"{who}: {name}"
        if self.detail:
            text += f" {self.detail}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (
            _rebuild_verifier_error,
            (self.cmd, self.errno, self.log, self.prog_name, self.insn_index, self.detail, self.hint),
        )


def _rebuild_verifier_error(
    cmd: str, err: int, log: str, prog_name: str, insn_index: int | None, summary: str, hint: str
) -> VerifierError:
    return VerifierError(cmd, err, log, prog_name=prog_name, insn_index=insn_index, summary=summary, hint=hint)


class NotSupportedError(BPFError):
    """A feature this kernel does not offer.

    Attributes: ``feature`` (what was asked), ``min_kernel`` (the mainline version that added it, e.g.
    ``"5.7"``, or ``""``), ``reason`` (why we know: the errno or probe result).
    """

    def __init__(self, feature: str, min_kernel: str = "", reason: str = "") -> None:
        self.feature = feature
        self.min_kernel = min_kernel
        self.reason = reason
        super().__init__(feature, min_kernel, reason)

    def __str__(self) -> str:
        text = f"{self.feature} is not supported"
        if self.min_kernel:
            text += f" (a Linux {self.min_kernel} feature)"
        if self.reason:
            text += f": {self.reason}"
        return text


_BY_ERRNO: dict[int, type[SyscallError]] = {
    _errno.EPERM: PermissionDeniedError,
    _errno.EACCES: PermissionDeniedError,
    _errno.ENOENT: KeyNotFoundError,
    _errno.ENOSPC: NoSpaceError,
    _errno.E2BIG: NoSpaceError,
    ENOTSUPP: NotSupportedSyscallError,
    _errno.EOPNOTSUPP: NotSupportedSyscallError,
}

_DEFAULT_HINTS: dict[int, str] = {
    _errno.EPERM: "missing CAP_BPF/CAP_SYS_ADMIN, or this kernel forbids the object",
    ENOTSUPP: "the kernel lacks support, e.g. no BPF trampoline for this program type",
}


def from_errno(cmd: str, err: int, hint: str = "", detail: str = "") -> SyscallError:
    """Build the :class:`SyscallError` subclass for *err* (an errno int) raised by command *cmd*."""
    cls = _BY_ERRNO.get(err, SyscallError)
    return cls(cmd, err, hint or _DEFAULT_HINTS.get(err, ""), detail)
