"""Feature probes: what this kernel offers, found by asking it (loading, creating, attaching tiny objects).

Each probe answers :class:`Status` ``AVAILABLE``, ``UNSUPPORTED`` or ``INCONCLUSIVE`` (the kernel's answer
did not decide it, e.g. EPERM without privileges), names the mainline kernel version that added the
feature, and says why. Decided answers are cached for the process; inconclusive ones are asked again.
Whether BPF LSM works is only known by loading and attaching a real LSM program (docs/kernel.md: a kernel can
list ``bpf`` as an active LSM and still refuse LSM programs).
"""

from __future__ import annotations

import enum
import errno as _errno
import os
from collections.abc import Callable
from dataclasses import dataclass

from pybpfguard.bpf import _sys
from pybpfguard.bpf._sys import link as _link
from pybpfguard.bpf.asm import R0, Insn
from pybpfguard.bpf.asm.helpers import helper_id
from pybpfguard.bpf.btf.errors import BTFError
from pybpfguard.bpf.errors import BPFError, NotSupportedError, SyscallError, VerifierError
from pybpfguard.bpf.link import attach_lsm, attach_raw_tracepoint, attach_tracing
from pybpfguard.bpf.lsm_support import BPFLSMUnavailable
from pybpfguard.bpf.maps import Map, MapFlags, MapSpec, MapType
from pybpfguard.bpf.program import Program, ProgramSpec
from pybpfguard.bpf.types import AttachType, LinkType, ProgFlags, ProgType


class Status(enum.Enum):
    AVAILABLE = "available"
    UNSUPPORTED = "unsupported"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's answer: ``name`` (``"prog_type BPF_PROG_TYPE_LSM"``), ``status``, ``min_kernel`` (the
    mainline version that added it, e.g. ``"5.7"``), ``reason`` (the kernel's answer, for humans)."""

    name: str
    status: Status
    min_kernel: str
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.status is Status.AVAILABLE

    def require(self) -> None:
        """Raise NotSupportedError (feature, min_kernel, reason) unless available."""
        if not self.available:
            raise NotSupportedError(self.name, self.min_kernel, f"{self.status.value}: {self.reason}")


_CACHE: dict[str, ProbeResult] = {}
_Answer = tuple[Status, str]


def clear_cache() -> None:
    """Forget every cached answer (tests; a kernel does not change under a running process)."""
    _CACHE.clear()


def _probe(name: str, min_kernel: str, ask: Callable[[], _Answer]) -> ProbeResult:
    cached = _CACHE.get(name)
    if cached is not None:
        return cached
    status, reason = ask()
    result = ProbeResult(name, status, min_kernel, reason)
    if status is not Status.INCONCLUSIVE:
        _CACHE[name] = result
    return result


def _privileged() -> bool:
    """CAP_SYS_ADMIN (21) or CAP_BPF (39) in the effective set: an EPERM then means "refused", not us."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                caps = int(line.split()[1], 16)
                return bool(caps & (1 << 21) or caps & (1 << 39))
    return False


def _from_error(err: BPFError) -> _Answer:
    """Classify a failed load/create: EINVAL/E2BIG/ENOTSUPP/EOPNOTSUPP mean "this kernel lacks it"."""
    if isinstance(err, NotSupportedError):
        return Status.UNSUPPORTED, err.reason
    if isinstance(err, SyscallError):
        if err.errno in (_errno.EINVAL, _errno.E2BIG, _errno.EOPNOTSUPP, 524):
            return Status.UNSUPPORTED, str(err)
        if err.errno == _errno.EPERM and _privileged():
            return Status.UNSUPPORTED, f"refused with EPERM although privileged: {err}"
    return Status.INCONCLUSIVE, str(err)


RET_0 = (Insn.mov64_imm(R0, 0), Insn.exit())

# include/uapi/linux/bpf.h enum bpf_prog_type -> (first mainline kernel, expected_attach_type, BTF target)
PROG_TYPES: dict[ProgType, tuple[str, AttachType | None, str]] = {
    ProgType.BPF_PROG_TYPE_SOCKET_FILTER: ("3.19", None, ""),
    ProgType.BPF_PROG_TYPE_SCHED_CLS: ("4.1", None, ""),
    ProgType.BPF_PROG_TYPE_TRACEPOINT: ("4.7", None, ""),
    ProgType.BPF_PROG_TYPE_XDP: ("4.8", None, ""),
    ProgType.BPF_PROG_TYPE_CGROUP_SKB: ("4.10", None, ""),
    ProgType.BPF_PROG_TYPE_CGROUP_SOCK: ("4.10", None, ""),
    ProgType.BPF_PROG_TYPE_CGROUP_DEVICE: ("4.15", None, ""),
    ProgType.BPF_PROG_TYPE_RAW_TRACEPOINT: ("4.17", None, ""),
    ProgType.BPF_PROG_TYPE_CGROUP_SOCK_ADDR: ("4.17", AttachType.BPF_CGROUP_INET4_CONNECT, ""),
    ProgType.BPF_PROG_TYPE_TRACING: ("5.5", AttachType.BPF_TRACE_RAW_TP, "sched_process_exec"),
    ProgType.BPF_PROG_TYPE_LSM: ("5.7", AttachType.BPF_LSM_MAC, "file_open"),
    ProgType.BPF_PROG_TYPE_SYSCALL: ("5.14", None, ""),
}


# SYSCALL programs must be sleepable (kernel/bpf/verifier.c: "Syscall programs can only be sleepable").
_PROG_FLAGS = {ProgType.BPF_PROG_TYPE_SYSCALL: ProgFlags.BPF_F_SLEEPABLE}


def _noop_spec(kind: ProgType, insns: tuple[Insn, ...] = RET_0, attach: AttachType | None = None) -> ProgramSpec:
    _, default_attach, target = PROG_TYPES[kind]
    attach = attach or default_attach
    return ProgramSpec(
        "probe",
        kind,
        insns,
        expected_attach_type=attach,
        attach_to=target if attach == default_attach else "",
        prog_flags=_PROG_FLAGS.get(kind, 0),
    )


def _loads(spec: ProgramSpec) -> _Answer:
    try:
        Program.load(spec).close()
    except (BPFError, BTFError) as err:
        return _from_error(err) if not isinstance(err, BTFError) else (Status.UNSUPPORTED, str(err))
    return Status.AVAILABLE, "loaded"


def prog_type(kind: ProgType) -> ProbeResult:
    """Whether programs of type *kind* load (a ``r0 = 0; exit`` program, with a BTF target if needed)."""
    return _probe(f"prog_type {kind.name}", PROG_TYPES[kind][0], lambda: _loads(_noop_spec(kind)))


# include/uapi/linux/bpf.h enum bpf_map_type -> (first mainline kernel, spec for a small instance)
MAP_TYPES: dict[MapType, tuple[str, MapSpec]] = {
    MapType.BPF_MAP_TYPE_HASH: ("3.19", MapSpec(MapType.BPF_MAP_TYPE_HASH, 1, 4, 8)),
    MapType.BPF_MAP_TYPE_ARRAY: ("3.19", MapSpec(MapType.BPF_MAP_TYPE_ARRAY, 1, 4, 8)),
    MapType.BPF_MAP_TYPE_PERCPU_HASH: ("4.6", MapSpec(MapType.BPF_MAP_TYPE_PERCPU_HASH, 1, 4, 8)),
    MapType.BPF_MAP_TYPE_PERCPU_ARRAY: ("4.6", MapSpec(MapType.BPF_MAP_TYPE_PERCPU_ARRAY, 1, 4, 8)),
    MapType.BPF_MAP_TYPE_LRU_HASH: ("4.10", MapSpec(MapType.BPF_MAP_TYPE_LRU_HASH, 1, 4, 8)),
    MapType.BPF_MAP_TYPE_LRU_PERCPU_HASH: ("4.10", MapSpec(MapType.BPF_MAP_TYPE_LRU_PERCPU_HASH, 1, 4, 8)),
    MapType.BPF_MAP_TYPE_LPM_TRIE: (
        "4.11",
        MapSpec(MapType.BPF_MAP_TYPE_LPM_TRIE, 1, 8, 8, flags=MapFlags.BPF_F_NO_PREALLOC),
    ),
    MapType.BPF_MAP_TYPE_ARRAY_OF_MAPS: (
        "4.12",
        MapSpec(MapType.BPF_MAP_TYPE_ARRAY_OF_MAPS, 1, 4, 4, inner=MapSpec(MapType.BPF_MAP_TYPE_ARRAY, 1, 4, 4)),
    ),
    MapType.BPF_MAP_TYPE_HASH_OF_MAPS: (
        "4.12",
        MapSpec(MapType.BPF_MAP_TYPE_HASH_OF_MAPS, 1, 4, 4, inner=MapSpec(MapType.BPF_MAP_TYPE_ARRAY, 1, 4, 4)),
    ),
    MapType.BPF_MAP_TYPE_RINGBUF: ("5.8", MapSpec(MapType.BPF_MAP_TYPE_RINGBUF, os.sysconf("SC_PAGE_SIZE"))),
    MapType.BPF_MAP_TYPE_BLOOM_FILTER: ("5.16", MapSpec(MapType.BPF_MAP_TYPE_BLOOM_FILTER, 1, 0, 8)),
}


def map_type(kind: MapType) -> ProbeResult:
    """Whether maps of type *kind* can be created (a one-element instance)."""
    min_kernel, spec = MAP_TYPES[kind]

    def ask() -> _Answer:
        try:
            Map.create(spec).close()
        except BPFError as err:
            return _from_error(err)
        return Status.AVAILABLE, "created"

    return _probe(f"map_type {kind.name}", min_kernel, ask)


# Helpers the agent uses: name -> first mainline kernel (include/uapi/linux/bpf.h, helper docs).
HELPERS: dict[str, str] = {
    "map_lookup_elem": "3.19",
    "get_current_pid_tgid": "4.2",
    "get_current_cgroup_id": "4.18",
    "send_signal": "5.3",
    "ringbuf_reserve": "5.8",
    "ringbuf_submit": "5.8",
    "ktime_get_boot_ns": "5.8",
    "d_path": "5.10",
    "get_current_task_btf": "5.11",
    "loop": "5.17",
}
# Verifier words for "this helper does not exist / is not for this program type" (kernel/bpf/verifier.c).
_HELPER_REFUSED = ("invalid func unknown#", "unknown func", "program of this type cannot use helper", "not allowed")


def helper(kind: ProgType, name: str) -> ProbeResult:
    """Whether a program of type *kind* may call helper *name* (``"ringbuf_reserve"``). The probe program
    calls it with unset arguments: an argument complaint still means the call itself is allowed."""
    type_result = prog_type(kind)

    def ask() -> _Answer:
        if not type_result.available:
            return type_result.status, f"program type {kind.name}: {type_result.reason}"
        spec = _noop_spec(kind, (Insn.call(helper_id(name)), *RET_0))
        try:
            Program.load(spec).close()
        except VerifierError as err:
            words = " ".join(err.log.splitlines()[-3:])
            if any(refusal in words for refusal in _HELPER_REFUSED):
                return Status.UNSUPPORTED, str(err)
            return Status.AVAILABLE, "call accepted (arguments refused, as expected)"
        except BPFError as err:
            return _from_error(err)
        return Status.AVAILABLE, "loaded"

    return _probe(f"helper {name} in {kind.name}", HELPERS.get(name, ""), ask)


# ISA version -> (first mainline kernel, an instruction only that version has); all run as socket filters.
ISA: dict[int, tuple[str, Insn]] = {
    2: ("4.14", Insn.jmp_imm("jlt", R0, 1, to=0)),
    3: ("5.1", Insn.jmp32_imm("jlt", R0, 1, to=0)),
    4: ("6.6", Insn.movsx64(R0, R0, 8)),
}


def isa(version: int) -> ProbeResult:
    """Whether the verifier accepts instructions of ISA *version* (2: jlt/jle, 3: jmp32, 4: movsx ...)."""
    min_kernel, insn = ISA[version]
    spec = ProgramSpec("probe_isa", ProgType.BPF_PROG_TYPE_SOCKET_FILTER, (Insn.mov64_imm(R0, 0), insn, Insn.exit()))
    return _probe(f"isa v{version}", min_kernel, lambda: _loads(spec))


def kernel_btf() -> ProbeResult:
    """Whether the kernel exposes its BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)."""
    path = "/sys/kernel/btf/vmlinux"
    return _probe(
        "kernel_btf",
        "5.4",
        lambda: (Status.AVAILABLE, path) if os.path.exists(path) else (Status.UNSUPPORTED, f"{path} is missing"),
    )


def _link_create_answer(kind: ProgType, attach: AttachType) -> _Answer:
    """LINK_CREATE a program of type *kind* at *attach* on a target that is no such object (/dev/null): EBADF means
    the kernel has this link kind and went on to look the target up; EINVAL means it has not."""
    try:
        prog = Program.load(_noop_spec(kind, attach=attach))
    except BPFError as err:
        return _from_error(err)
    with prog, _sys.Fd(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC), "/dev/null") as target:
        try:
            _link.link_create(prog.fd, attach, target=target).close()
        except SyscallError as err:
            if err.errno == _errno.EBADF:
                return Status.AVAILABLE, "LINK_CREATE looked up the target (EBADF for a non-target fd)"
            return _from_error(err)
    return Status.AVAILABLE, "linked"


def _attach_answer(spec: ProgramSpec, attach: Callable[[Program], object]) -> _Answer:
    try:
        with Program.load(spec) as prog:
            link = attach(prog)
            link.close()  # type: ignore[attr-defined]
    except (BPFError, BTFError) as err:
        return _from_error(err) if isinstance(err, BPFError) else (Status.UNSUPPORTED, str(err))
    return Status.AVAILABLE, "attached and detached"


def link_type(link: LinkType) -> ProbeResult:
    """Whether this kernel makes BPF links of kind *link* (raw_tracepoint, tracing, cgroup, perf_event)."""
    raw_tp = ProgramSpec("probe", ProgType.BPF_PROG_TYPE_RAW_TRACEPOINT, RET_0)
    asks: dict[LinkType, tuple[str, Callable[[], _Answer]]] = {
        LinkType.BPF_LINK_TYPE_RAW_TRACEPOINT: (
            "5.8",
            lambda: _attach_answer(raw_tp, lambda p: attach_raw_tracepoint(p, "sys_enter")),
        ),
        LinkType.BPF_LINK_TYPE_TRACING: (
            "5.8",
            lambda: _attach_answer(_noop_spec(ProgType.BPF_PROG_TYPE_TRACING), attach_tracing),
        ),
        LinkType.BPF_LINK_TYPE_CGROUP: (
            "5.7",
            lambda: _link_create_answer(ProgType.BPF_PROG_TYPE_CGROUP_SKB, AttachType.BPF_CGROUP_INET_INGRESS),
        ),
        LinkType.BPF_LINK_TYPE_PERF_EVENT: (
            "5.15",
            lambda: _link_create_answer(ProgType.BPF_PROG_TYPE_TRACEPOINT, AttachType.BPF_PERF_EVENT),
        ),
    }
    min_kernel, ask = asks[link]
    return _probe(f"link_type {link.name}", min_kernel, ask)


def attach_fentry() -> ProbeResult:
    """Whether fentry programs (BPF trampolines) load: on ``do_unlinkat``."""
    spec = ProgramSpec(
        "probe",
        ProgType.BPF_PROG_TYPE_TRACING,
        RET_0,
        expected_attach_type=AttachType.BPF_TRACE_FENTRY,
        attach_to="do_unlinkat",
    )
    return _probe("attach fentry", "5.5", lambda: _loads(spec))


def bpf_lsm() -> ProbeResult:
    """Whether BPF LSM actually enforces here: ``bpf`` in the active LSM list, and a real LSM program on
    ``file_open`` (returning 0: allows everything) loads and attaches."""

    def ask() -> _Answer:
        try:
            with Program.load(_noop_spec(ProgType.BPF_PROG_TYPE_LSM)) as prog, attach_lsm(prog):
                pass  # attached with effect (attach_lsm checked the LSM list), detached again
        except BPFLSMUnavailable as err:
            unreadable = err.errno == 0 and isinstance(err.__cause__, OSError)  # the LSM list was unreadable
            return (Status.INCONCLUSIVE if unreadable else Status.UNSUPPORTED), err.reason
        except (BPFError, BTFError) as err:
            return _from_error(err) if isinstance(err, BPFError) else (Status.UNSUPPORTED, str(err))
        return Status.AVAILABLE, "an LSM program on file_open loaded and attached"

    return _probe("bpf_lsm usable", "5.7", ask)


def probe_all() -> list[ProbeResult]:
    """Every probe, in a stable order (program types, map types, helpers, ISA, BTF, links, attach kinds)."""
    results = [prog_type(t) for t in PROG_TYPES]
    results += [map_type(t) for t in MAP_TYPES]
    results += [helper(ProgType.BPF_PROG_TYPE_SOCKET_FILTER, h) for h in ("map_lookup_elem", "ringbuf_reserve")]
    results += [helper(ProgType.BPF_PROG_TYPE_TRACING, h) for h in HELPERS]
    results += [isa(v) for v in ISA]
    results.append(kernel_btf())
    results += [
        link_type(t)
        for t in (
            LinkType.BPF_LINK_TYPE_RAW_TRACEPOINT,
            LinkType.BPF_LINK_TYPE_TRACING,
            LinkType.BPF_LINK_TYPE_CGROUP,
            LinkType.BPF_LINK_TYPE_PERF_EVENT,
        )
    ]
    results += [attach_fentry(), bpf_lsm()]
    return results
