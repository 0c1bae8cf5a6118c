"""Bytes -> instructions (``decode``) and bytes -> LLVM BPF assembly text (``disassemble``).

The text is the syntax of ``llvm-mc -triple bpf`` / ``llvm-objdump -d`` (see ``text.py`` for the
extensions LLVM has no spelling for: pseudo ld_imm64 sources, kfunc and local calls). Jump targets
become labels named after their slot, ``L12:`` (byte offset 96), so the text round-trips through
``assemble`` to the same bytes.

Strict decoding (the default) refuses an instruction whose reserved fields are not zero, with every
reason (DecodeError with the slot index). Lenient decoding prints what it can and notes the reasons in
a comment.
"""

from __future__ import annotations

import struct

from pybpfguard.bpf.asm import opcodes as op
from pybpfguard.bpf.asm.errors import DecodeError
from pybpfguard.bpf.asm.helpers import helper_name
from pybpfguard.bpf.asm.insn import Insn

_ALU_SYM = {
    op.BPF_ADD: "+=",
    op.BPF_SUB: "-=",
    op.BPF_MUL: "*=",
    op.BPF_DIV: "/=",
    op.BPF_OR: "|=",
    op.BPF_AND: "&=",
    op.BPF_LSH: "<<=",
    op.BPF_RSH: ">>=",
    op.BPF_MOD: "%=",
    op.BPF_XOR: "^=",
    op.BPF_MOV: "=",
    op.BPF_ARSH: "s>>=",
}
_JMP_SYM = {
    op.BPF_JEQ: "==",
    op.BPF_JGT: ">",
    op.BPF_JGE: ">=",
    op.BPF_JSET: "&",
    op.BPF_JNE: "!=",
    op.BPF_JSGT: "s>",
    op.BPF_JSGE: "s>=",
    op.BPF_JLT: "<",
    op.BPF_JLE: "<=",
    op.BPF_JSLT: "s<",
    op.BPF_JSLE: "s<=",
}
_ATOMIC_RMW = {op.BPF_ADD: "add", op.BPF_AND: "and", op.BPF_OR: "or", op.BPF_XOR: "xor"}
_PSEUDO_LD = {
    op.BPF_PSEUDO_MAP_FD: "map_fd",
    op.BPF_PSEUDO_MAP_VALUE: "map_value",
    op.BPF_PSEUDO_BTF_ID: "btf_id",
    op.BPF_PSEUDO_FUNC: "func",
    op.BPF_PSEUDO_MAP_IDX: "map_idx",
    op.BPF_PSEUDO_MAP_IDX_VALUE: "map_idx_value",
}
# pseudo sources whose second imm carries meaning (offset, module BTF fd)
_PSEUDO_PAIR = {op.BPF_PSEUDO_MAP_VALUE, op.BPF_PSEUDO_MAP_IDX_VALUE, op.BPF_PSEUDO_BTF_ID}
_ALU_OPS_VALID = set(_ALU_SYM) | {op.BPF_NEG, op.BPF_END}
_COND_OPS = set(_JMP_SYM)
_JMP_CLASSES = (op.BPF_JMP, op.BPF_JMP32)


def _mem(base: int, off: int) -> str:
    return f"r{base} + {off}" if off >= 0 else f"r{base} - {-off}"


def _rel(off: int) -> str:
    return f"+{off}" if off >= 0 else str(off)


def check_insn(code: int, dst: int, src: int, off: int, imm: int) -> list[str]:
    """Every reason why the slot (code, dst_reg, src_reg, off, imm) is not a valid instruction; [] if it is.
    ld_imm64's second slot is checked by the caller. Rules: instruction-set.rst plus the verifier's
    reserved-field checks (kernel/bpf/verifier.c ``check_*``: "BPF_* uses reserved fields")."""
    r: list[str] = []
    cls = code & 0x07
    if cls in (op.BPF_ALU, op.BPF_ALU64):
        aop, x = code & 0xF0, code & op.BPF_X
        if aop not in _ALU_OPS_VALID:
            return [f"unknown ALU operation {aop:#x}"]
        if aop == op.BPF_END:
            if cls == op.BPF_ALU64 and x:
                r.append("ALU64 END must use source bit 0 (0xd7 bswap)")
            if imm not in (16, 32, 64):
                r.append(f"byte swap width {imm} is not 16, 32 or 64")
            if src or off:
                r.append("non-zero src_reg/off in a byte swap")
        elif aop == op.BPF_NEG:
            if x or src or off or imm:
                r.append("non-zero source bit, src_reg, off or imm in neg")
        else:
            if x:
                if imm and not (aop == op.BPF_MOV and cls == op.BPF_ALU64 and off == op.BPF_ADDR_SPACE_CAST):
                    r.append(f"non-zero imm {imm} in a register-source ALU instruction")
            elif src:
                r.append(f"non-zero src_reg {src} in an immediate-source ALU instruction")
            if off:
                if aop in (op.BPF_DIV, op.BPF_MOD):
                    if off != 1:
                        r.append(f"off {off} in div/mod is not 0 or 1 (signed)")
                elif aop == op.BPF_MOV and x:
                    allowed = (1, 8, 16, 32) if cls == op.BPF_ALU64 else (8, 16)
                    if off not in allowed:
                        r.append(f"off {off} in mov is not a sign-extension width {allowed}")
                else:
                    r.append(f"non-zero off {off}")
        if dst > 10 or (x and src > 10):
            r.append("register number above 10")
        return r
    if cls in (op.BPF_JMP, op.BPF_JMP32):
        jop, x = code & 0xF0, code & op.BPF_X
        if jop == op.BPF_JA:
            if x or src or dst:
                r.append("non-zero source bit or registers in ja")
            if cls == op.BPF_JMP and imm:
                r.append(f"non-zero imm {imm} in goto")
            if cls == op.BPF_JMP32 and off:
                r.append(f"non-zero off {off} in gotol")
        elif jop == op.BPF_CALL:
            if cls == op.BPF_JMP32 or x:
                r.append("call must be BPF_JMP | BPF_CALL | BPF_K")
            if dst:
                r.append(f"non-zero dst_reg {dst} in call")
            if src > op.BPF_PSEUDO_KFUNC_CALL:
                r.append(f"unknown call src_reg {src}")
            if off and src != op.BPF_PSEUDO_KFUNC_CALL:
                r.append(f"non-zero off {off} in call")
        elif jop == op.BPF_EXIT:
            if cls == op.BPF_JMP32 or x or dst or src or off or imm:
                r.append("exit must be 0x95 with all other fields zero")
        elif jop == op.BPF_JCOND:
            if cls == op.BPF_JMP32 or x or dst or src or imm:
                r.append("may_goto must be 0xe5 with registers and imm zero")
        elif jop in _COND_OPS:
            if x and imm:
                r.append(f"non-zero imm {imm} in a register compare")
            if not x and src:
                r.append(f"non-zero src_reg {src} in an immediate compare")
            if dst > 10 or src > 10:
                r.append("register number above 10")
        else:
            r.append(f"unknown jump operation {jop:#x}")
        return r
    mode, size = code & 0xE0, code & 0x18
    if cls == op.BPF_LD:
        if mode in (op.BPF_ABS, op.BPF_IND):
            if size == op.BPF_DW:
                r.append("legacy packet loads exist for BPF_B, BPF_H and BPF_W only")
            if dst or off or (mode == op.BPF_ABS and src):
                r.append("reserved fields (dst_reg, off, src_reg of ABS) must be zero")
        elif code == op.LD_IMM64:
            if off:
                r.append(f"non-zero off {off} in ld_imm64")
            if src > op.BPF_PSEUDO_MAP_IDX_VALUE:
                r.append(f"unknown pseudo src {src:#x} in ld_imm64")
            if dst > 10:
                r.append("register number above 10")
        else:
            r.append(f"unknown BPF_LD mode {mode:#x}")
        return r
    if cls == op.BPF_LDX:
        if mode not in (op.BPF_MEM, op.BPF_MEMSX) or (mode == op.BPF_MEMSX and size == op.BPF_DW):
            r.append(f"unknown BPF_LDX mode {mode:#x} for size {size:#x}")
        if imm:
            r.append(f"non-zero imm {imm} in a load")
    elif cls == op.BPF_ST:
        if mode != op.BPF_MEM:
            r.append(f"unknown BPF_ST mode {mode:#x}")
        if src:
            r.append(f"non-zero src_reg {src} in a store of an immediate")
    else:  # BPF_STX
        if mode == op.BPF_ATOMIC:
            if imm in (op.BPF_LOAD_ACQ, op.BPF_STORE_REL):
                pass
            elif (imm & ~op.BPF_FETCH) in _ATOMIC_RMW or imm in (op.BPF_XCHG, op.BPF_CMPXCHG):
                if size not in (op.BPF_W, op.BPF_DW):
                    r.append("atomic read-modify-write exists for BPF_W and BPF_DW only")
            else:
                r.append(f"unknown atomic operation imm {imm:#x}")
        elif mode == op.BPF_MEM:
            if imm:
                r.append(f"non-zero imm {imm} in a store of a register")
        else:
            r.append(f"unknown BPF_STX mode {mode:#x}")
    if dst > 10 or src > 10:
        r.append("register number above 10")
    return r


def format_fields(code: int, dst: int, src: int, off: int, imm: int, target: str | None = None) -> str:
    """One instruction as LLVM BPF assembly. *target* replaces the relative offset of a jump, local call
    or ld_func by a label. For ld_imm64, *imm* is the full 64-bit value."""
    cls = code & 0x07
    if cls == op.BPF_ALU64 or cls == op.BPF_ALU:
        p = "r" if cls == op.BPF_ALU64 else "w"
        aop = code & 0xF0
        if aop == op.BPF_END:
            kind = "bswap" if cls == op.BPF_ALU64 else ("be" if code & op.BPF_X else "le")
            return f"r{dst} = {kind}{imm} r{dst}"
        if aop == op.BPF_NEG:
            return f"{p}{dst} = -{p}{dst}"
        if code & op.BPF_X:
            if aop == op.BPF_MOV and off:
                if off == op.BPF_ADDR_SPACE_CAST and cls == op.BPF_ALU64:
                    return f"r{dst} = addr_space_cast(r{src}, {imm >> 16 & 0xFFFF}, {imm & 0xFFFF})"
                return f"{p}{dst} = (s{off}){p}{src}"
            operand = f"{p}{src}"
        else:
            operand = str(imm)
        sym = _ALU_SYM[aop]
        if off == 1 and aop in (op.BPF_DIV, op.BPF_MOD):
            sym = "s" + sym
        return f"{p}{dst} {sym} {operand}"
    if cls == op.BPF_JMP or cls == op.BPF_JMP32:
        jop = code & 0xF0
        if jop == op.BPF_JA:
            if cls == op.BPF_JMP32:
                return f"gotol {target or _rel(imm)}"
            return f"goto {target or _rel(off)}"
        if jop == op.BPF_CALL:
            if src == op.BPF_PSEUDO_CALL:
                return f"call local({target or _rel(imm)})"
            if src == op.BPF_PSEUDO_KFUNC_CALL:
                return f"call kfunc({imm & 0xFFFFFFFF}, {off})" if off else f"call kfunc({imm & 0xFFFFFFFF})"
            name = helper_name(imm)
            return f"call {imm}  # {name}" if name else f"call {imm}"
        if jop == op.BPF_EXIT:
            return "exit"
        if jop == op.BPF_JCOND:
            return f"may_goto {target or _rel(off)}"
        p = "r" if cls == op.BPF_JMP else "w"
        operand = f"{p}{src}" if code & op.BPF_X else str(imm)
        return f"if {p}{dst} {_JMP_SYM[jop]} {operand} goto {target or _rel(off)}"
    mode, size = code & 0xE0, code & 0x18
    t = op.SIZE_TYPE[size]
    if cls == op.BPF_LDX:
        if mode == op.BPF_MEMSX:
            t = "s" + t[1:]
        return f"r{dst} = *({t} *)({_mem(src, off)})"
    if cls == op.BPF_ST:
        return f"*({t} *)({_mem(dst, off)}) = {imm}"
    if cls == op.BPF_STX:
        if mode == op.BPF_MEM:
            return f"*({t} *)({_mem(dst, off)}) = r{src}"
        return _format_atomic(size, dst, src, off, imm)
    # BPF_LD
    if code == op.LD_IMM64:
        name = _PSEUDO_LD.get(src)
        if name is None:
            return f"r{dst} = {imm:#x} ll"
        low, high = imm & 0xFFFFFFFF, imm >> 32
        if src == op.BPF_PSEUDO_FUNC:
            arg = target or _rel(low - (1 << 32) if low >= 1 << 31 else low)
        elif src in _PSEUDO_PAIR and (high or src != op.BPF_PSEUDO_BTF_ID):
            arg = f"{low}, {high}"
        else:
            arg = str(low)
        return f"r{dst} = {name}({arg}) ll"
    if mode == op.BPF_ABS:
        return f"r0 = *({t} *)skb[{imm}]"
    if imm:
        return f"r0 = *({t} *)skb[{_mem(src, imm)}]"
    return f"r0 = *({t} *)skb[r{src}]"


def _format_atomic(size: int, dst: int, src: int, off: int, imm: int) -> str:
    t = op.SIZE_TYPE[size]
    p = "r" if size == op.BPF_DW else "w"
    addr = f"({t} *)({_mem(dst, off)})"
    if imm == op.BPF_LOAD_ACQ:  # dst_reg = smp_load_acquire(src_reg + off)
        return f"{p}{dst} = load_acquire(({t} *)({_mem(src, off)}))"
    if imm == op.BPF_STORE_REL:  # smp_store_release(dst_reg + off, src_reg)
        return f"store_release({addr}, {p}{src})"
    if imm == op.BPF_XCHG:
        return f"{p}{src} = xchg{'_64' if size == op.BPF_DW else '32_32'}({_mem(dst, off)}, {p}{src})"
    if imm == op.BPF_CMPXCHG:
        fn = "cmpxchg_64" if size == op.BPF_DW else "cmpxchg32_32"
        return f"{p}0 = {fn}({_mem(dst, off)}, {p}0, {p}{src})"
    name = _ATOMIC_RMW[imm & ~op.BPF_FETCH]
    if imm & op.BPF_FETCH:
        return f"{p}{src} = atomic_fetch_{name}({addr}, {p}{src})"
    return f"lock *{addr} {_ALU_SYM[imm & ~op.BPF_FETCH]} {p}{src}"


def format_insn(insn: Insn) -> str:
    """``str(insn)``: the instruction as assembly; an unresolved label target is printed by name."""
    return format_fields(insn.code, insn.dst_reg, insn.src_reg, insn.off, insn.imm, insn.target)


_SLOT = struct.Struct("<BBhi")


def _slots(code: bytes | bytearray | memoryview) -> list[tuple[int, int, int, int, int]]:
    if len(code) % 8:
        raise DecodeError(len(code) // 8, [f"length {len(code)} bytes is not a multiple of 8"])
    return [(c, regs & 0x0F, regs >> 4, off, imm) for c, regs, off, imm in _SLOT.iter_unpack(code)]


def _walk(code: bytes | bytearray | memoryview, lenient: bool):
    """Yield (slot, code, dst, src, off, imm, reasons) per instruction; imm is 64-bit for ld_imm64."""
    slots = _slots(code)
    n = len(slots)
    i = 0
    while i < n:
        c, dst, src, off, imm = slots[i]
        reasons = check_insn(c, dst, src, off, imm)
        start = i
        i += 1
        if c == op.LD_IMM64:
            if i >= n:
                reasons.append("ld_imm64 without its second slot")
                high = 0
            else:
                c2, dst2, src2, off2, high = slots[i]
                i += 1
                if c2 or dst2 or src2 or off2:
                    reasons.append("non-zero code, registers or off in the second slot of ld_imm64")
                if src in _PSEUDO_LD and src not in _PSEUDO_PAIR and high:
                    reasons.append(f"non-zero second imm {high} for pseudo src {src}")
            imm = (high & 0xFFFFFFFF) << 32 | (imm & 0xFFFFFFFF)
            if reasons and lenient:
                src = src if src in _PSEUDO_LD else 0
                off = 0
        if reasons and not lenient:
            raise DecodeError(start, reasons)
        yield start, c, dst, src, off, imm, reasons


def decode(code: bytes | bytearray | memoryview, *, lenient: bool = False) -> list[Insn]:
    """Decode raw little-endian instructions into ``Insn`` values with raw offsets (no labels).

    Raises DecodeError (slot index and every reason) unless *lenient*, which keeps what it can.
    ``finalize(decode(b)) == b`` for every valid program.
    """
    return [Insn(c, dst, src, off, imm) for _, c, dst, src, off, imm, _ in _walk(code, lenient)]


def _target_slot(slot: int, c: int, src: int, off: int, imm: int) -> int | None:
    cls = c & 0x07
    if cls == op.BPF_JMP or cls == op.BPF_JMP32:
        jop = c & 0xF0
        if jop == op.BPF_EXIT:
            return None
        if jop == op.BPF_CALL:
            return slot + 1 + imm if src == op.BPF_PSEUDO_CALL else None
        if cls == op.BPF_JMP32 and jop == op.BPF_JA:
            return slot + 1 + imm
        return slot + 1 + off
    if c == op.LD_IMM64 and src == op.BPF_PSEUDO_FUNC:
        low = imm & 0xFFFFFFFF
        return slot + 1 + (low - (1 << 32) if low >= 1 << 31 else low)
    return None


def disassemble(code: bytes | bytearray | memoryview, *, lenient: bool = False, labels: bool = True) -> str:
    """Raw instructions -> LLVM BPF assembly, one instruction per line (tab-indented), ending in a newline.

    With *labels*, each jump target inside the program gets a line ``L<slot>:`` and jumps name it;
    targets outside the program stay relative. Raises DecodeError unless *lenient*, which appends
    ``# invalid: <reasons>`` to the lines it had to guess.
    """
    decoded = list(_walk(code, lenient))
    names: dict[int, str] = {}
    targets: list[int | None] = []
    if labels:
        starts = {d[0] for d in decoded}
        # only jumps, calls and ld_imm64 can refer to a slot: skip the lookup for everything else
        targets = [
            _target_slot(slot, c, src, off, imm) if c & 0x07 in _JMP_CLASSES or c == op.LD_IMM64 else None
            for slot, c, _dst, src, off, imm, _ in decoded
        ]
        for t in targets:
            if t is not None and t in starts:
                names[t] = f"L{t}"
    lines: list[str] = []
    append = lines.append
    for i, (slot, c, dst, src, off, imm, reasons) in enumerate(decoded):
        target = None
        if names:
            if slot in names:
                append(f"{names[slot]}:")
            t = targets[i]
            if t is not None:
                target = names.get(t)
        if reasons:
            try:
                text = format_fields(c, dst, src, off, imm, target)
            except KeyError:
                text = f"# code {c:#04x} dst_reg {dst} src_reg {src} off {off} imm {imm}"
            append(f"\t{text}  # invalid: {'; '.join(reasons)}")
        else:
            append("\t" + format_fields(c, dst, src, off, imm, target))
    return "\n".join(lines) + "\n" if lines else ""
