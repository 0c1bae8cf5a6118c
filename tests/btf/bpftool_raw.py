"""The oracle: our decoded types rendered as ``bpftool btf dump ... format raw`` prints them (bpftool 7.1,
tools/bpf/bpftool/btf.c dump_btf_type), so a text comparison checks every field we decode."""

from __future__ import annotations

import re
import subprocess

from pybpfguard.bpf.btf import Spec
from pybpfguard.bpf.btf import types as t
from pybpfguard.bpf.btf.kinds import BtfIntEncoding

_INT_ENC = {
    0: "(none)",
    BtfIntEncoding.BTF_INT_SIGNED: "SIGNED",
    BtfIntEncoding.BTF_INT_CHAR: "CHAR",
    BtfIntEncoding.BTF_INT_BOOL: "BOOL",
}
_VAR_LINKAGE = {0: "static", 1: "global", 2: "extern"}
_HEAD = re.compile(r"^\[(\d+)\] ")


def bpftool_raw(path: str, base: str | None = None) -> dict[int, str]:
    """``bpftool btf dump file <path> [-B base] format raw`` as {type id: the type's lines}."""
    cmd = ["bpftool", "btf", "dump", "file", path, "format", "raw"]
    if base:
        cmd[1:1] = ["-B", base]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    types: dict[int, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        m = _HEAD.match(line)
        if m:
            current = types.setdefault(int(m[1]), [])
        current.append(line)
    return {tid: "\n".join(lines) for tid, lines in types.items()}


def _n(name: str) -> str:
    return f"'{name or '(anon)'}'"


def render(spec: Spec, typ: t.BtfType) -> str:
    """*typ* in bpftool's raw format."""
    head = f"[{typ.id}] {typ.kind.name.removeprefix('BTF_KIND_')} {_n(typ.name)}"
    body: list[str] = []
    match typ:
        case t.Int():
            head += (
                f" size={typ.size} bits_offset={typ.bit_offset} nr_bits={typ.nr_bits}"
                f" encoding={_INT_ENC.get(typ.encoding, 'UNKN')}"
            )
        case t.Array():
            head += f" type_id={typ.type_id} index_type_id={typ.index_type_id} nr_elems={typ.nelems}"
        case t.Struct():
            head += f" size={typ.size} vlen={len(typ.members)}"
            for m in typ.members:
                line = f"\t{_n(m.name)} type_id={m.type_id} bits_offset={m.bit_offset}"
                body.append(line + (f" bitfield_size={m.bitfield_size}" if m.bitfield_size else ""))
        case t.Enum():
            suffix = ("LL" if typ.signed else "ULL") if isinstance(typ, t.Enum64) else ""
            head += f" encoding={'SIGNED' if typ.signed else 'UNSIGNED'} size={typ.size} vlen={len(typ.values)}"
            body = [f"\t{_n(v.name)} val={v.value}{suffix}" for v in typ.values]
        case t.Fwd():
            head += f" fwd_kind={'union' if typ.is_union else 'struct'}"
        case t.Func():
            head += f" type_id={typ.type_id} linkage={typ.linkage.name.removeprefix('BTF_FUNC_').lower()}"
        case t.FuncProto():
            params = [*typ.params, t.Param("", 0)] if typ.variadic else typ.params
            head += f" ret_type_id={typ.return_type_id} vlen={len(params)}"
            body = [f"\t{_n(p.name)} type_id={p.type_id}" for p in params]
        case t.Var():
            head += f" type_id={typ.type_id}, linkage={_VAR_LINKAGE[typ.linkage]}"
        case t.Datasec():
            head += f" size={typ.size} vlen={len(typ.vars)}"
            body = [
                f"\ttype_id={v.type_id} offset={v.offset} size={v.size} (VAR {_n(spec.type_by_id(v.type_id).name)})"
                for v in typ.vars
            ]
        case t.Float():
            head += f" size={typ.size}"
        case t.DeclTag():
            head += f" type_id={typ.type_id} component_idx={typ.component_idx}"
        case t._Ref():
            head += f" type_id={typ.type_id}"
    return "\n".join([head, *body])
