"""Whether BPF LSM can work here, and the typed error that says why not.

Two independent facts decide it (Documentation/bpf/prog_lsm.rst):

- ``bpf`` must be in the active LSM list (securityfs ``/sys/kernel/security/lsm``; the path can be
  overridden with the environment variable ``PYBPFGUARD_LSM_PATH``). Without it an LSM program loads and
  attaches but never runs: the silent failure we refuse to allow.
- The kernel must give LSM programs a BPF trampoline. Some hardened kernels refuse every trampoline
  program with EPERM and an empty verifier log before looking at the attr; kernels without trampoline
  support for the arch answer ENOTSUPP (524). The list alone cannot tell: only a load can.
"""

from __future__ import annotations

import errno as _errno
import os
from pathlib import Path

from pybpfguard.bpf.errors import ENOTSUPP, NotSupportedError

LSM_PATH_ENV = "PYBPFGUARD_LSM_PATH"
DEFAULT_LSM_PATH = "/sys/kernel/security/lsm"
BPF_LSM_MIN_KERNEL = "5.7"  # BPF_PROG_TYPE_LSM, BPF_LSM_MAC


class BPFLSMUnavailable(NotSupportedError):
    """BPF LSM cannot enforce on this kernel. ``reason`` says why; ``errno`` is the kernel's answer when a
    load or attach was refused (0 when the LSM list alone decided)."""

    def __init__(self, reason: str, errno: int = 0) -> None:
        super().__init__("BPF LSM", BPF_LSM_MIN_KERNEL, reason)
        self.errno = errno

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.reason, self.errno))

    def __str__(self) -> str:
        # The kernel may well be new enough: say what refused it, not "a Linux 5.7 feature".
        return self.reason if self.reason.startswith("BPF LSM") else f"BPF LSM unusable: {self.reason}"


def lsm_path() -> Path:
    """The active-LSM list file: ``$PYBPFGUARD_LSM_PATH`` or /sys/kernel/security/lsm."""
    return Path(os.environ.get(LSM_PATH_ENV) or DEFAULT_LSM_PATH)


def active_lsms() -> tuple[str, ...]:
    """The active LSMs in kernel order (``lockdown,capability,...,bpf``).

    Raises OSError (FileNotFoundError when securityfs is not mounted) naming the path.
    """
    return tuple(name for name in lsm_path().read_text().strip().split(",") if name)


def bpf_lsm_listed() -> bool:
    """Whether ``bpf`` is in the active LSM list; OSError when the list cannot be read."""
    return "bpf" in active_lsms()


def require_bpf_lsm_listed() -> None:
    """Raise BPFLSMUnavailable unless ``bpf`` is in the active LSM list (an unreadable list also raises:
    we cannot promise enforcement we cannot confirm)."""
    path = lsm_path()
    try:
        names = active_lsms()
    except OSError as err:
        raise BPFLSMUnavailable(f"cannot read the LSM list {path}: {err.strerror} (is securityfs mounted?)") from err
    if "bpf" not in names:
        raise BPFLSMUnavailable(
            f"'bpf' is missing from the active LSM list in {path} ({','.join(names)}); "
            "add it with the lsm= boot parameter"
        )


def _listed_note() -> str:
    """How the LSM list bears on a refusal, as a clause to append after the errno."""
    try:
        listed = bpf_lsm_listed()
    except OSError:
        return f"; the LSM list {lsm_path()} is unreadable"
    return " although 'bpf' is in the LSM list" if listed else " and 'bpf' is missing from the LSM list"


def trampoline_refusal(err: int, log: str) -> str | None:
    """The hint for a trampoline program (LSM, fentry, fexit, EXT) refused with *err*, or None when *err*
    and *log* do not look like a refusal of trampolines (EPERM with an empty log, or ENOTSUPP)."""
    if err == _errno.EPERM and not log.strip():
        return "this kernel refuses BPF trampolines: EPERM with an empty verifier log"
    if err == ENOTSUPP:
        return "not supported (e.g. no BPF trampoline)"
    return None


def lsm_refusal(err: int, log: str) -> BPFLSMUnavailable | None:
    """The typed error for an LSM program load/attach refused with *err* (and verifier *log*), or None when
    the refusal is not about BPF LSM being unusable (e.g. a genuine verifier rejection)."""
    if err == _errno.EPERM and not log.strip():
        return BPFLSMUnavailable("BPF LSM unusable: the kernel refuses trampoline programs (LSM, fentry): "
                                 f"trampolines refused with EPERM{_listed_note()}", err)
    if err == ENOTSUPP:
        return BPFLSMUnavailable(
            f"BPF LSM unusable: the kernel has no BPF trampoline for LSM programs (errno 524){_listed_note()}", err
        )
    return None
