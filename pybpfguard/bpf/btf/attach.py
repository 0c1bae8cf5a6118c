"""Which BTF type a tracing/LSM program names in ``attach_btf_id``, resolved the way the kernel does.

kernel/bpf/verifier.c bpf_check_attach_target():
- ``tp_btf`` (BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP): the id of the TYPEDEF ``btf_trace_<tracepoint>``
  (include/trace/bpf_probe.h defines it as a pointer to the FUNC_PROTO of the raw tracepoint; the kernel
  checks the prefix, then typedef -> PTR -> FUNC_PROTO). The proto's first param is the ``void *``
  cookie, the rest are the tracepoint's TP_PROTO arguments.
- ``lsm`` (BPF_PROG_TYPE_LSM, BPF_LSM_MAC/BPF_LSM_CGROUP): the id of the FUNC ``bpf_lsm_<hook>``
  (kernel/bpf/bpf_lsm.c); LSM_HOOK names the hook without the prefix (``file_open``).
- ``fentry``/``fexit``/``fmod_ret``: the id of the FUNC of that name.
- ``iter``: the id of the FUNC ``bpf_iter_<target>``.
Ids differ between kernels (bpf_lsm_file_open: 64597 on this 6.18 host, 55193 on Debian 6.1): always
resolve at run time.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from pybpfguard.bpf.btf import types as t
from pybpfguard.bpf.btf.errors import BTFFormatError
from pybpfguard.bpf.btf.kinds import BtfKind

if TYPE_CHECKING:
    from pybpfguard.bpf.btf.spec import Spec


class BtfAttach(enum.StrEnum):
    """The attach kinds that take an ``attach_btf_id``, spelled as libbpf's section prefixes."""

    TP_BTF = "tp_btf"
    LSM = "lsm"
    FENTRY = "fentry"
    FEXIT = "fexit"
    FMOD_RET = "fmod_ret"
    ITER = "iter"


# (kind, prefix) of the BTF type each attach kind names.
_TARGETS: dict[BtfAttach, tuple[BtfKind, str]] = {
    BtfAttach.TP_BTF: (BtfKind.BTF_KIND_TYPEDEF, "btf_trace_"),
    BtfAttach.LSM: (BtfKind.BTF_KIND_FUNC, "bpf_lsm_"),
    BtfAttach.FENTRY: (BtfKind.BTF_KIND_FUNC, ""),
    BtfAttach.FEXIT: (BtfKind.BTF_KIND_FUNC, ""),
    BtfAttach.FMOD_RET: (BtfKind.BTF_KIND_FUNC, ""),
    BtfAttach.ITER: (BtfKind.BTF_KIND_FUNC, "bpf_iter_"),
}


def attach_btf_id_for(spec: Spec, attach: BtfAttach | str, name: str) -> int:
    """The ``attach_btf_id`` for attaching *attach* (``"tp_btf"``, ``"lsm"``, ...) to *name* (the
    tracepoint, hook or function name without prefix). Raises ValueError for an unknown attach kind,
    TypeNotFoundError (naming the prefixed symbol) when this kernel has no such target."""
    kind, prefix = _TARGETS[BtfAttach(attach)]
    return spec.find_id(kind, prefix + name)


def attach_proto(spec: Spec, attach: BtfAttach | str, name: str) -> t.FuncProto:
    """The FUNC_PROTO a program attached by *attach* to *name* receives its arguments from (for tp_btf
    including the leading ``void *`` param). Raises TypeNotFoundError, BTFFormatError."""
    type_id = attach_btf_id_for(spec, attach, name)
    typ = spec.type_by_id(type_id)
    assert isinstance(typ, (t.Typedef, t.Func))
    target = spec.type_by_id(typ.type_id)
    if isinstance(typ, t.Typedef):  # btf_trace_<name> is a pointer to the proto
        target = spec.type_by_id(target.type_id) if isinstance(target, t.Ptr) else target
    if not isinstance(target, t.FuncProto):
        raise BTFFormatError(f"type id {type_id} ({typ.name})", f"does not lead to a FUNC_PROTO but {target!r}")
    return target
