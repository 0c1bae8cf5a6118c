"""BTF: read the kernel's type information lazily; write a program's own BTF.

Reading (``Spec``; Documentation/bpf/btf.rst, include/uapi/linux/btf.h)::

    spec = load_vmlinux()            # /sys/kernel/btf/vmlinux, or $PYBPFGUARD_BTF_PATH; cached per path
    mod = load_module("nf_tables")   # /sys/kernel/btf/nf_tables, split on vmlinux (ids continue)
    spec.find(BTF_KIND_STRUCT, "task_struct")          # -> types.Struct (first match, lowest id)
    spec.find_id(BTF_KIND_FUNC, "bpf_lsm_file_open")   # -> int; TypeNotFoundError if absent
    spec.member_offset("task_struct", "real_parent")    # -> bytes; through anonymous structs/unions
    spec.member("file", "f_path.dentry")                # -> MemberInfo(bit_offset, bitfield_size, size...)
    spec.attach_btf_id_for("tp_btf", "sched_process_exec")  # id of typedef btf_trace_sched_process_exec
    spec.attach_btf_id_for("lsm", "file_open")          # id of FUNC bpf_lsm_file_open
    spec.func_proto("bpf_lsm_file_open")                # -> types.FuncProto
    spec.resolve(type_id), spec.sizeof(type_id), spec.type_by_id(type_id)

Types are frozen msgspec Structs (``types``), one per kind 1..19, referring to others by id. An unknown
kind raises UnknownKindError naming kind and type id; an 8-byte ENUM has ``values_may_be_truncated``.

Layout, the interface program generators use (``layout``)::

    layout = Layout.from_btf(spec)                     # live
    layout.offsetof("task_struct", "tgid")             # bytes
    layout.sizeof("task_struct")                        # bytes
    layout.field("task_struct", "tgid")                 # Field(offset, size), size picks the load width
    d = Layout.record(spec, wanted=[("task_struct", "tgid")], sizes=["task_struct"])   # JSON-able dict
    layout = Layout.from_dict(d)                       # answers only what was recorded

Writing (``writer``, ``program``): ``BTFBuilder`` encodes INT, PTR, STRUCT, FUNC_PROTO, FUNC and the
string table; ``ProgramBTF.load(funcs)`` builds a blob with one FUNC per function of a program, loads it
with BPF_BTF_LOAD and carries the ``func_info`` records BPF_PROG_LOAD needs (``bpf_loop`` callbacks,
global functions): ``.fd`` (owned), ``.func_info`` (bytes), ``.func_info_cnt``, ``.func_info_rec_size``.
"""

from pybpfguard.bpf.btf.attach import BtfAttach, attach_btf_id_for, attach_proto
from pybpfguard.bpf.btf.errors import (
    BitfieldMemberError,
    BTFError,
    BTFFormatError,
    LayoutFormatError,
    LayoutMissingError,
    MemberNotFoundError,
    TypeNotFoundError,
    UnknownKindError,
)
from pybpfguard.bpf.btf.kinds import BtfFuncLinkage, BtfIntEncoding, BtfKind, BtfVarLinkage
from pybpfguard.bpf.btf.layout import Field, Layout
from pybpfguard.bpf.btf.members import MemberInfo
from pybpfguard.bpf.btf.spec import Spec, load_module, load_vmlinux, vmlinux_path

# The kinds at module level with their uapi names: find(BTF_KIND_STRUCT, "task_struct").
BTF_KIND_INT = BtfKind.BTF_KIND_INT
BTF_KIND_PTR = BtfKind.BTF_KIND_PTR
BTF_KIND_ARRAY = BtfKind.BTF_KIND_ARRAY
BTF_KIND_STRUCT = BtfKind.BTF_KIND_STRUCT
BTF_KIND_UNION = BtfKind.BTF_KIND_UNION
BTF_KIND_ENUM = BtfKind.BTF_KIND_ENUM
BTF_KIND_FWD = BtfKind.BTF_KIND_FWD
BTF_KIND_TYPEDEF = BtfKind.BTF_KIND_TYPEDEF
BTF_KIND_VOLATILE = BtfKind.BTF_KIND_VOLATILE
BTF_KIND_CONST = BtfKind.BTF_KIND_CONST
BTF_KIND_RESTRICT = BtfKind.BTF_KIND_RESTRICT
BTF_KIND_FUNC = BtfKind.BTF_KIND_FUNC
BTF_KIND_FUNC_PROTO = BtfKind.BTF_KIND_FUNC_PROTO
BTF_KIND_VAR = BtfKind.BTF_KIND_VAR
BTF_KIND_DATASEC = BtfKind.BTF_KIND_DATASEC
BTF_KIND_FLOAT = BtfKind.BTF_KIND_FLOAT
BTF_KIND_DECL_TAG = BtfKind.BTF_KIND_DECL_TAG
BTF_KIND_TYPE_TAG = BtfKind.BTF_KIND_TYPE_TAG
BTF_KIND_ENUM64 = BtfKind.BTF_KIND_ENUM64

# The writer side needs the syscall layer (ctypes, libc): imported on first use so that reading BTF,
# which a cold start does first, does not pay for it.
_LAZY = {
    "BTFBuilder": "pybpfguard.bpf.btf.writer",
    "FuncInfo": "pybpfguard.bpf.btf.writer",
    "encode_func_info": "pybpfguard.bpf.btf.writer",
    "BTFLoadError": "pybpfguard.bpf.btf.program_btf",
    "FuncDecl": "pybpfguard.bpf.btf.program_btf",
    "ProgramBTF": "pybpfguard.bpf.btf.program_btf",
    "load_btf": "pybpfguard.bpf.btf.program_btf",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "BTF_KIND_ARRAY",
    "BTF_KIND_CONST",
    "BTF_KIND_DATASEC",
    "BTF_KIND_DECL_TAG",
    "BTF_KIND_ENUM",
    "BTF_KIND_ENUM64",
    "BTF_KIND_FLOAT",
    "BTF_KIND_FUNC",
    "BTF_KIND_FUNC_PROTO",
    "BTF_KIND_FWD",
    "BTF_KIND_INT",
    "BTF_KIND_PTR",
    "BTF_KIND_RESTRICT",
    "BTF_KIND_STRUCT",
    "BTF_KIND_TYPEDEF",
    "BTF_KIND_TYPE_TAG",
    "BTF_KIND_UNION",
    "BTF_KIND_VAR",
    "BTF_KIND_VOLATILE",
    "BTFBuilder",
    "BTFError",
    "BTFFormatError",
    "BTFLoadError",
    "BitfieldMemberError",
    "BtfAttach",
    "BtfFuncLinkage",
    "BtfIntEncoding",
    "BtfKind",
    "BtfVarLinkage",
    "Field",
    "FuncDecl",
    "FuncInfo",
    "Layout",
    "LayoutFormatError",
    "LayoutMissingError",
    "MemberInfo",
    "MemberNotFoundError",
    "ProgramBTF",
    "Spec",
    "TypeNotFoundError",
    "UnknownKindError",
    "attach_btf_id_for",
    "attach_proto",
    "encode_func_info",
    "load_btf",
    "load_module",
    "load_vmlinux",
    "vmlinux_path",
]
