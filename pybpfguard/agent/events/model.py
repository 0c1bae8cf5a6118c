"""The event types of docs/events.md as msgspec Structs, fields in the order the JSON must have.

Each event class is built from a field table (:func:`_event`), so the shared runs (process identity,
the ``<name>_b64`` siblings of the non-UTF-8 rule, the extensions) are written once. The JSON ``type``
is the msgspec tag, so the encoder writes it first. Optional fields default to ``UNSET`` and are
omitted, never ``null`` (docs/events.md). Constructors do not type-check (msgspec): the decoders and
the daemon build these from trusted values. Untrusted JSON is checked with
:func:`pybpfguard.agent.events.schema.validate`.

Why required fields have a default: the decoders construct events positionally, which msgspec does
about ten times faster than by keyword for a 25-field Struct (about 0.2 against 1.5 us here), and
positional construction needs every field after the first optional one to have a default. A
required field therefore defaults to :data:`REQUIRED`, which no encoder accepts: an event built
without one fails at encoding (``TypeError: Encoding objects of type MissingRequiredField is
unsupported``) instead of printing a wrong line. :data:`REQUIRED_FIELDS` lists them per class, and
:func:`strict_class` gives a twin built from the same table with truly required fields (used for
the JSON schema).

Field order (docs/events.md): the common fields a type carries in their relative order
(``pid, ppid, start_time, exec_id, trace_id, parent_*, cgid, cgroup_path, comm, path,
resolved_path, action, ino, dev``), then the type's own fields, then pybpfguard's additions
(``path_truncated``), then the extensions ``suppressed_during_prior_window`` (on types that dedup
keys: block, net) and ``k8s_pod, k8s_namespace, k8s_service_account``.
"""

from __future__ import annotations

import enum
import functools
from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType

FieldSpec = tuple[str, Any] | tuple[str, Any, Any]


class Action(enum.StrEnum):
    """docs/events.md ``action`` of block, net, kernel and forensic events."""

    AUDIT = "AUDIT"  # allowed and reported (effective mode audit)
    TERM = "TERM"  # -EPERM plus SIGTERM actually sent
    KILL = "KILL"
    INT = "INT"
    BLOCK = "BLOCK"  # -EPERM, no signal


U16 = Annotated[int, Meta(ge=0, le=65535)]
U32 = Annotated[int, Meta(ge=0, le=2**32 - 1)]
U64 = Annotated[int, Meta(ge=0)]  # msgspec bounds stop at int64; the record field is u64
State = Literal["ENFORCE", "ENFORCE_SIGNAL", "AUDIT_FALLBACK", "DEGRADED"]
ReasonCode = Literal[
    "STARTUP", "BPF_LSM_UNAVAILABLE", "HOOK_ATTACH_FAILED", "ENFORCE_GATE_FALLBACK", "SIGNAL_FALLBACK",
    "BREAK_GLASS", "EMERGENCY_DISABLE", "EMERGENCY_ENABLE", "DEADMAN_EXPIRED", "AUTO_REVERT",
    "PRIORITY_RINGBUF_DROPS", "MAP_FULL", "RECOVERED",
]
NetRuleType = Literal["ip", "cidr", "port", "ip_port", "identity", "cg_ip", "cg_port"]
Direction = Literal["egress", "bind", "listen", "accept", "send", "recv"]


class MissingRequiredField:
    """Type of :data:`REQUIRED`, the default of required fields; deliberately not encodable."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = MissingRequiredField()


def _req(name: str, tp: Any) -> FieldSpec:
    return (name, tp)


def _opt(name: str, tp: Any) -> FieldSpec:
    return (name, tp | UnsetType, UNSET)


def _text(name: str, *, optional: bool = False) -> list[FieldSpec]:
    """A text field and its ``<name>_b64`` sibling, present only when the bytes were not UTF-8."""
    return [_opt(name, str) if optional else _req(name, str), _opt(f"{name}_b64", str)]


def _ids(prefix: str = "") -> list[FieldSpec]:
    return [_req(f"{prefix}start_time", U64), _req(f"{prefix}exec_id", str), _req(f"{prefix}trace_id", str)]


# pid ... comm: the process identity of docs/events.md, with the parent's ids after the process's own.
PROCESS: list[FieldSpec] = [
    _req("pid", U32), _req("ppid", U32), *_ids(), *_ids("parent_"),
    _req("cgid", U64), *_text("cgroup_path"), *_text("comm"),
]
DEDUP: list[FieldSpec] = [_opt("suppressed_during_prior_window", Annotated[int, Meta(ge=1)])]
K8S: list[FieldSpec] = [_opt("k8s_pod", str), _opt("k8s_namespace", str), _opt("k8s_service_account", str)]
TRUNCATED: list[FieldSpec] = [_opt("path_truncated", Literal[True])]  # pybpfguard: the kernel cut the path


_TABLES: dict[type, list[FieldSpec]] = {}
REQUIRED_FIELDS: dict[type, tuple[str, ...]] = {}


def _event(class_name: str, tag: str, fields: list[FieldSpec], doc: str) -> type[msgspec.Struct]:
    fast = [spec if len(spec) == 3 else (*spec, REQUIRED) for spec in fields]
    cls = msgspec.defstruct(class_name, fast, gc=False, tag_field="type", tag=tag, forbid_unknown_fields=True,
                            module=__name__)
    cls.__doc__ = doc
    _TABLES[cls] = fields
    REQUIRED_FIELDS[cls] = tuple(spec[0] for spec in fields if len(spec) == 2)
    return cls


@functools.cache
def strict_class(cls: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """A twin of event class *cls* from the same field table, whose required fields have no default."""
    twin = msgspec.defstruct(cls.__name__, _TABLES[cls], kw_only=True, gc=False, tag_field="type",
                             tag=cls.__struct_config__.tag, forbid_unknown_fields=True, module=f"{__name__}.strict")
    twin.__doc__ = cls.__doc__
    return twin


ExecEvent = _event("ExecEvent", "exec", [
    *PROCESS, *_text("path", optional=True), _req("ino", U64), _req("dev", U32),
    _req("ancestors", Annotated[list[U32], Meta(max_length=8)]), *TRUNCATED, *K8S,
], "A successful exec. ``path`` is the executable the kernel ran (pybpfguard addition, with ino/dev).")

ExecArgvEvent = _event("ExecArgvEvent", "exec_argv", [
    _req("pid", U32), *_ids(), _req("argc", U32), _req("argv", list[str]), _opt("argv_b64", list[str]),
], "The arguments of an exec; fewer ``argv`` elements than ``argc`` means the capture was cut.")

BlockEvent = _event("BlockEvent", "block", [
    *PROCESS, *_text("path", optional=True), *_text("resolved_path", optional=True),
    _req("action", Action), _req("ino", U64), _req("dev", U32), *TRUNCATED, *DEDUP, *K8S,
], "A denied (or audited) file open or exec (docs/events.md order, which the SIEM regexes need).")

_NET: list[FieldSpec] = [
    *PROCESS, _req("family", Literal["ipv4", "ipv6"]), _req("protocol", str), _req("direction", Direction),
    _opt("remote_ip", str), _opt("remote_port", U16), _opt("local_port", U16), _req("rule_type", NetRuleType),
    _req("action", Action), *DEDUP, *K8S,
]
NET_TYPES = ("net_connect_block", "net_bind_block", "net_listen_block", "net_accept_block",
             "net_sendmsg_block", "net_recvmsg_block")
NetConnectBlockEvent, NetBindBlockEvent, NetListenBlockEvent, NetAcceptBlockEvent, NetSendmsgBlockEvent, \
    NetRecvmsgBlockEvent = (
        _event("".join(p.title() for p in tag.split("_")) + "Event", tag, _NET, f"A ``{tag}`` network denial.")
        for tag in NET_TYPES)

_KERNEL: list[FieldSpec] = [
    *PROCESS, _opt("target_pid", U32), _req("rule_type", Literal["ptrace", "module", "bpf"]),
    _req("action", Action), *K8S,
]
KERNEL_TYPES = ("kernel_ptrace_block", "kernel_module_block", "kernel_bpf_block")
KernelPtraceBlockEvent, KernelModuleBlockEvent, KernelBpfBlockEvent = (
    _event("".join(p.title() for p in tag.split("_")) + "Event", tag, _KERNEL, f"A ``{tag}`` denial.")
    for tag in KERNEL_TYPES)

StateChangeEvent = _event("StateChangeEvent", "state_change", [
    _req("event_version", Literal[1]), _req("state", State), _req("reason_code", ReasonCode),
    _opt("detail", str), _req("strict_mode", bool), _req("transition_id", Annotated[int, Meta(ge=1)]),
    _req("degradation_count", Annotated[int, Meta(ge=0)]),
], "A posture transition (docs/enforcement.md).")

ControlChangeEvent = _event("ControlChangeEvent", "control_change", [
    _req("event_version", Literal[1]), _req("control", Literal["emergency_disable"]),
    _req("action", Literal["disable", "enable"]), _req("enabled", bool), _req("prev_enabled", bool),
    _req("changed_at_unix", int), _req("uid", U32), _req("pid", U32), _req("node_name", str),
    _req("reason", str), _req("reason_sha256", Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]),
    _opt("policy_hash", str), _req("storm_active", bool), _req("storm_transitions_in_window", int),
    _req("storm_threshold", int), _req("storm_window_seconds", int),
], "An emergency control toggled (docs/cli.md).")

#: ``diag_type`` values of :data:`DiagEvent` (docs/events.md): ring or queue losses, failed hook decisions.
DIAG_MAP_PRESSURE, DIAG_HOOK_ERROR = 1, 2

DiagEvent = _event("DiagEvent", "diag", [
    _req("diag_type", Literal[1, 2, 3]), _req("timestamp", U64), _opt("data1", U64), _opt("data2", U64),
    _opt("msg", Annotated[str, Meta(max_length=64)]),
], "A diagnostic: 1 map_pressure, 2 hook_error, 3 process_eviction; ``timestamp`` ns since boot.")

ForensicBlockEvent = _event("ForensicBlockEvent", "forensic_block", [
    *PROCESS, _req("ino", U64), _req("dev", U32), _req("uid", U32), _req("gid", U32), _opt("username", str),
    _opt("groupname", str), _opt("exec_ino", U64), _opt("exec_dev", U32), _opt("exec_stage", int),
    _opt("verified_exec", bool), _opt("exec_identity_known", bool), _req("action", Action), *K8S,
], "An exec-identity denial with the forensic context of docs/events.md.")

OverlayCopyUpEvent = _event("OverlayCopyUpEvent", "overlay_copy_up", [
    _req("pid", U32), _req("cgid", U64), *_text("cgroup_path"), _req("src_ino", U64), _req("src_dev", U32),
    _req("deny_flags", int), *K8S,
], "An overlayfs copy-up of a protected lower inode.")

EVENT_TYPES: tuple[type[msgspec.Struct], ...] = (
    ExecEvent, ExecArgvEvent, BlockEvent, NetConnectBlockEvent, NetBindBlockEvent, NetListenBlockEvent,
    NetAcceptBlockEvent, NetSendmsgBlockEvent, NetRecvmsgBlockEvent, KernelPtraceBlockEvent,
    KernelModuleBlockEvent, KernelBpfBlockEvent, StateChangeEvent, ControlChangeEvent, DiagEvent,
    ForensicBlockEvent, OverlayCopyUpEvent,
)
Event = Union[EVENT_TYPES]  # type: ignore[valid-type]  # noqa: UP007  (a runtime union for msgspec decode)
BY_TAG: dict[str, type[msgspec.Struct]] = {cls.__struct_config__.tag: cls for cls in EVENT_TYPES}


def tag_of(event: msgspec.Struct) -> str:
    """The JSON ``type`` of *event* (its msgspec tag)."""
    return event.__struct_config__.tag  # type: ignore[return-value]
