"""LLVM BPF assembly text -> instructions (``parse``) and -> bytes (``assemble``).

The syntax is the one ``llvm-mc -triple bpf`` reads and ``llvm-objdump -d`` writes (with or without
``--mattr=+alu32``), one instruction per line or several separated by ``;``: ``r0 = *(u64 *)(r1 + 8)``,
``if r1 s> 5 goto +3``, ``lock *(u32 *)(r1 + 0) += r2`` (or ``+= w2``), ``r1 = 0x123 ll``, ``w0 = w1``,
``callx r1``, ``ld_pseudo r1, 1, 5``, ``name:`` labels (also before an instruction on the same line),
comments from ``#`` or ``//`` to the end of the line and ``/* ... */``. Spaces between tokens are optional
and the first word's case does not matter (``EXIT``, ``R0 = 1``), as for llvm-mc. Numbers are written as
llvm-mc reads them, optionally signed: decimal, ``0x`` hex, ``0b`` binary, and octal with a leading 0
(``010`` is 8). Jump targets are labels or signed slot offsets (``goto +3``).

Where llvm-mc silently truncates (``r0 = 4294967296``, ``r11``, ``ld_pseudo`` with a 64-bit imm), and for
constant expressions (``r0 = 1 + 2``), this parser refuses the line with an error instead.

Our spellings where LLVM has none (``disassemble`` writes them, ``parse`` reads them back):

===============================================  ==============================================
``r1 = map_fd(5) ll``                            ld_imm64 src 1 (BPF_PSEUDO_MAP_FD), imm = fd
``r1 = map_value(5, 16) ll``                     src 2 (BPF_PSEUDO_MAP_VALUE): fd, value offset
``r1 = btf_id(1234) ll`` / ``btf_id(1234, 7)``   src 3 (BPF_PSEUDO_BTF_ID): id, module BTF fd
``r1 = func(label) ll`` / ``func(+3) ll``        src 4 (BPF_PSEUDO_FUNC): subprogram address
``r1 = map_idx(0) ll``                           src 5 (BPF_PSEUDO_MAP_IDX): fd_array index
``r1 = map_idx_value(0, 16) ll``                 src 6 (BPF_PSEUDO_MAP_IDX_VALUE)
``call local(label)`` / ``call local(+3)``       bpf-to-bpf call (src 1)
``call kfunc(1234)`` / ``call kfunc(1234, 2)``   kfunc call (src 2): BTF id, fd_array index
``call ringbuf_reserve``                         helper by name (``bpf_`` prefix optional);
                                                 ``call 131`` by id, as LLVM writes it; ``call name``
                                                 of any other name is LLVM's bpf-to-bpf call
``r0 = *(u32 *)skb[r1 + 4]``                     BPF_IND with a non-zero imm
``w0 = load_acquire((u8 *)(r1 + 0))``            load-acquire, ``store_release((u8 *)(r1 + 0), w2)``
                                                 store-release (LLVM 20 spellings)
===============================================  ==============================================

Errors are AsmSyntaxError with 1-based line and column.

(About 700 lines: one grammar, its patterns beside the code that reads their groups; split it into
patterns and actions if it grows further.)
"""

from __future__ import annotations

import re

from pybpfguard.bpf.asm import opcodes as op
from pybpfguard.bpf.asm.errors import AsmError, AsmSyntaxError, DuplicateLabel, UnknownHelper, UnresolvedLabel
from pybpfguard.bpf.asm.finalize import finalize
from pybpfguard.bpf.asm.helpers import helper_id
from pybpfguard.bpf.asm.insn import Insn

_NUM = r"[+-]?(?:0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)"
_LABEL = r"[A-Za-z_.$][\w.$]*"
_TGT = rf"(?:{_NUM}|{_LABEL})"
_MEM = rf"\(\s*r(\d+)\s*(?:([+-])\s*({_NUM}))?\s*\)"
_SIZE = r"\(\s*([us])(8|16|32|64)\s*\*\s*\)"

# fast paths for the commonest shapes (one regex, one groups() call); anything unusual falls through to
# the general parser, which also produces the errors
_RE_FAST_ALU = re.compile(rf"([rw])(\d+)\s*(s>>=|s/=|s%=|<<=|>>=|[-+*/|&^%]=|=)\s*(?:([rw])(\d+)|({_NUM}))$")
_RE_FAST_LOAD = re.compile(r"r(\d+)\s*=\s*\*\(u(8|16|32|64) \*\)\(r(\d+) ([+-]) (\d+)\)$")
_RE_FAST_STORE = re.compile(r"\*\(u(8|16|32|64) \*\)\(r(\d+) ([+-]) (\d+)\)\s*=\s*r(\d+)$")
_RE_LABEL = re.compile(rf"\s*({_LABEL})\s*:")
_RE_ASSIGN = re.compile(r"([rw])(\d+)\s*(s>>=|s/=|s%=|<<=|>>=|[-+*/|&^%]=|=)\s*")
# after "goto" a space is needed only before a label: "goto+3" is two tokens for llvm-mc, "gotofoo" one
_GOTO_SP = r"(?:\s+|(?=[+-]))"
_RE_IF = re.compile(
    rf"if\s+([rw])(\d+)\s*(s[<>]=?|[<>]=?|==|!=|&)\s*(?:([rw])(\d+)|({_NUM}))\s+goto{_GOTO_SP}({_TGT})$"
)
_RE_GOTO = re.compile(rf"(goto|gotol|may_goto){_GOTO_SP}({_TGT})$")
_RE_CALL = re.compile(
    rf"call\s+(?:local\(\s*({_TGT})\s*\)|kfunc\(\s*({_NUM})\s*(?:,\s*({_NUM})\s*)?\)|({_NUM})|({_LABEL}))$"
)
_RE_CALLX = re.compile(r"callx\s+([rw])(\d+)$")
# llvm-mc reads "ld_pseudo r1 4 -1" as two operands, "r1" and "4 - 1": a sign after a bare space is an operator
_RE_LD_PSEUDO = re.compile(rf"ld_pseudo\s+([rw])(\d+)\s*(?:,\s*|\s+)({_NUM})(?:\s*,\s*|\s+(?![+-]))({_NUM})$")
# the words llvm-mc reads in any case at the start of a statement (its parser lower-cases them)
_RE_FIRST_WORD = re.compile(r"(?:if|callx|call|gotol|goto|may_goto|exit|lock|ld_pseudo|[rw]\d+)\b", re.IGNORECASE)
_RE_STORE = re.compile(rf"\*\s*{_SIZE}\s*{_MEM}\s*=\s*(?:([rw])(\d+)|({_NUM}))$")
_RE_LOCK = re.compile(rf"lock\s+\*\s*{_SIZE}\s*{_MEM}\s*(\+=|&=|\|=|\^=)\s*([rw])(\d+)$")
_RE_STORE_REL = re.compile(rf"store_release\(\s*{_SIZE}\s*{_MEM}\s*,\s*([rw])(\d+)\s*\)$")
# right-hand sides of "reg = ..."
_RE_RHS_NUM = re.compile(rf"({_NUM})(\s+ll)?$")
_RE_RHS_REG = re.compile(r"(-?)\s*([rw])(\d+)$")
_RE_RHS_MOVSX = re.compile(r"\(\s*s(8|16|32)\s*\)\s*([rw])(\d+)$")
_RE_RHS_END = re.compile(r"(le|be|bswap)(16|32|64)\s+([rw])(\d+)$")
_RE_RHS_LOAD = re.compile(rf"\*\s*{_SIZE}\s*{_MEM}$")
_RE_RHS_SKB = re.compile(rf"\*\s*{_SIZE}\s*skb\[\s*(?:r(\d+)\s*(?:([+-])\s*({_NUM}))?|({_NUM}))\s*\]$")
_RE_RHS_PSEUDO = re.compile(
    rf"(map_fd|map_value|btf_id|func|map_idx_value|map_idx)\(\s*({_TGT})\s*(?:,\s*({_NUM})\s*)?\)(\s+ll)?$"
)
_RE_RHS_FETCH = re.compile(rf"atomic_fetch_(add|and|or|xor)\(\s*{_SIZE}\s*{_MEM}\s*,\s*([rw])(\d+)\s*\)$")
_RE_RHS_XCHG = re.compile(rf"(xchg_64|xchg32_32)\(\s*r(\d+)\s*([+-])\s*({_NUM})\s*,\s*([rw])(\d+)\s*\)$")
_RE_RHS_CMPXCHG = re.compile(
    rf"(cmpxchg_64|cmpxchg32_32)\(\s*r(\d+)\s*([+-])\s*({_NUM})\s*,\s*([rw])0\s*,\s*([rw])(\d+)\s*\)$"
)
_RE_RHS_LOAD_ACQ = re.compile(rf"load_acquire\(\s*{_SIZE}\s*{_MEM}\s*\)$")
_RE_RHS_CAST = re.compile(rf"addr_space_cast\(\s*r(\d+)\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\)$")

_ASSIGN_OPS = {
    "+=": op.BPF_ADD,
    "-=": op.BPF_SUB,
    "*=": op.BPF_MUL,
    "/=": op.BPF_DIV,
    "|=": op.BPF_OR,
    "&=": op.BPF_AND,
    "<<=": op.BPF_LSH,
    ">>=": op.BPF_RSH,
    "%=": op.BPF_MOD,
    "^=": op.BPF_XOR,
    "s>>=": op.BPF_ARSH,
    "s/=": op.BPF_DIV,
    "s%=": op.BPF_MOD,
}
_COND_OPS = {
    "==": op.BPF_JEQ,
    ">": op.BPF_JGT,
    ">=": op.BPF_JGE,
    "&": op.BPF_JSET,
    "!=": op.BPF_JNE,
    "s>": op.BPF_JSGT,
    "s>=": op.BPF_JSGE,
    "<": op.BPF_JLT,
    "<=": op.BPF_JLE,
    "s<": op.BPF_JSLT,
    "s<=": op.BPF_JSLE,
}
_SIZES = {"8": op.BPF_B, "16": op.BPF_H, "32": op.BPF_W, "64": op.BPF_DW}
_PSEUDO_SRC = {
    "map_fd": op.BPF_PSEUDO_MAP_FD,
    "map_value": op.BPF_PSEUDO_MAP_VALUE,
    "btf_id": op.BPF_PSEUDO_BTF_ID,
    "func": op.BPF_PSEUDO_FUNC,
    "map_idx": op.BPF_PSEUDO_MAP_IDX,
    "map_idx_value": op.BPF_PSEUDO_MAP_IDX_VALUE,
}
_RMW_SYM = {"+=": op.BPF_ADD, "&=": op.BPF_AND, "|=": op.BPF_OR, "^=": op.BPF_XOR}
_RMW_NAME = {"add": op.BPF_ADD, "and": op.BPF_AND, "or": op.BPF_OR, "xor": op.BPF_XOR}


class _Fail(Exception):
    """Internal: a parse error at a column offset within the instruction text."""

    def __init__(self, message: str, col: int = 0) -> None:
        super().__init__(message)
        self.message, self.col = message, col


def _num(s: str, low: int, high: int, what: str) -> int:
    neg = s[0] == "-"
    body = s[1:] if s[0] in "+-" else s
    value = _unsigned(body)
    if neg:
        value = -value
    if not low <= value <= high:
        raise _Fail(f"{what} {s} outside [{low}, {high}]")
    return value


def _unsigned(body: str) -> int:
    """An unsigned literal as llvm-mc's lexer reads it: 0x hex, 0b binary, a leading 0 octal, else decimal."""
    if body[:2] in ("0x", "0X"):
        return int(body, 16)
    if body[:2] in ("0b", "0B"):
        return int(body[2:], 2)
    if len(body) > 1 and body[0] == "0":
        if body.strip("01234567"):
            raise _Fail(f"{body} is not an octal number (a leading 0 means octal, as for llvm-mc)")
        return int(body, 8)
    return int(body)


def _imm(s: str) -> int:
    v = _num(s, -(1 << 31), (1 << 32) - 1, "imm")
    return v - (1 << 32) if v >= 1 << 31 else v


def _off(sign: str | None, s: str | None) -> int:
    if s is None:
        return 0
    v = _num(s, -0x8000, 0xFFFF, "off")
    v = -v if sign == "-" else v
    if not -0x8000 <= v <= 0x7FFF:
        raise _Fail(f"off {v} outside [-32768, 32767]")
    return v


def _reg(n: str) -> int:
    r = int(n)
    if r > 10:
        raise _Fail(f"register {n} does not exist (r0..r10)")
    return r


def _target(s: str, lo: int, hi: int) -> tuple[int, str | None]:
    if s[0] in "+-" or s[0].isdigit():
        return _num(s, lo, hi, "jump offset"), None
    return 0, s


def _same_width(p: str, q: str) -> None:
    if p != q:
        raise _Fail(f"operands mix {p}- and {q}-registers")


def _parse_assign(m: re.Match[str], rest: str) -> Insn:
    p, dst, sym = m.group(1), _reg(m.group(2)), m.group(3)
    alu = op.BPF_ALU64 if p == "r" else op.BPF_ALU
    if sym != "=":
        code = _ASSIGN_OPS[sym]
        off = 1 if sym in ("s/=", "s%=") else 0
        rm = _RE_RHS_REG.match(rest)
        if rm and not rm.group(1):
            _same_width(p, rm.group(2))
            return Insn(alu | code | op.BPF_X, dst, _reg(rm.group(3)), off, 0)
        nm = _RE_RHS_NUM.match(rest)
        if nm and not nm.group(2):
            return Insn(alu | code | op.BPF_K, dst, 0, off, _imm(nm.group(1)))
        raise _Fail(f"expected a register or a number after {sym!r}")
    first = rest[:1]
    if first.isdigit() or first in "+-":
        rm = _RE_RHS_REG.match(rest)
        if rm:  # "-r1": neg
            _same_width(p, rm.group(2))
            if _reg(rm.group(3)) != dst:
                raise _Fail("neg must name the same register on both sides")
            return Insn(alu | op.BPF_NEG, dst)
        nm = _RE_RHS_NUM.match(rest)
        if nm is None:
            raise _Fail("expected a number")
        if nm.group(2):
            if p != "r":
                raise _Fail("a 64-bit load (ll) needs an r-register")
            v = _num(nm.group(1), -(1 << 63), (1 << 64) - 1, "imm")
            return Insn(op.LD_IMM64, dst, 0, 0, v & ((1 << 64) - 1))
        _num(nm.group(1), -(1 << 63), (1 << 64) - 1, "imm")  # a malformed literal is its own error
        try:
            return Insn(alu | op.BPF_MOV | op.BPF_K, dst, 0, 0, _imm(nm.group(1)))
        except _Fail as err:
            raise _Fail(f"{err.message}: a 64-bit constant needs the 'll' suffix") from None
    if first in "rw":
        rm = _RE_RHS_REG.match(rest)
        if rm:
            _same_width(p, rm.group(2))
            return Insn(alu | op.BPF_MOV | op.BPF_X, dst, _reg(rm.group(3)), 0, 0)
    if first == "(":
        sm = _RE_RHS_MOVSX.match(rest)
        if sm:
            _same_width(p, sm.group(2))
            bits = int(sm.group(1))
            if p == "w" and bits == 32:
                raise _Fail("w-register sign extension is from s8 or s16")
            return Insn(alu | op.BPF_MOV | op.BPF_X, dst, _reg(sm.group(3)), bits, 0)
    if first == "*":
        lm = _RE_RHS_LOAD.match(rest)
        if lm:
            sign, bits = lm.group(1), lm.group(2)
            if sign == "s":
                if bits == "64" or p == "w":
                    raise _Fail("sign-extending loads are r = *(s8|s16|s32 *)")
                mode = op.BPF_MEMSX
            else:
                if p == "w" and bits == "64":
                    raise _Fail("a 64-bit load needs an r-register")
                mode = op.BPF_MEM
            return Insn(op.BPF_LDX | mode | _SIZES[bits], dst, _reg(lm.group(3)), _off(lm.group(4), lm.group(5)))
        km = _RE_RHS_SKB.match(rest)
        if km:
            if dst != 0 or km.group(1) == "s" or km.group(2) == "64":
                raise _Fail("legacy packet loads are r0 = *(u8|u16|u32 *)skb[...]")
            size = _SIZES[km.group(2)]
            if km.group(6) is not None:
                return Insn(op.BPF_LD | op.BPF_ABS | size, 0, 0, 0, _imm(km.group(6)))
            imm = 0
            if km.group(5) is not None:
                imm = _imm(km.group(5))
                imm = -imm if km.group(4) == "-" else imm
            return Insn(op.BPF_LD | op.BPF_IND | size, 0, _reg(km.group(3)), 0, imm)
    return _parse_named_rhs(p, dst, rest)


def _parse_named_rhs(p: str, dst: int, rest: str) -> Insn:
    pm = _RE_RHS_PSEUDO.match(rest)
    if pm:
        if p != "r":
            raise _Fail("a 64-bit load needs an r-register")
        name, arg, second = pm.group(1), pm.group(2), pm.group(3)
        src = _PSEUDO_SRC[name]
        if src == op.BPF_PSEUDO_FUNC:
            if second is not None:
                raise _Fail("func() takes one argument")
            rel, label = _target(arg, -(1 << 31), (1 << 31) - 1)
            return Insn(op.LD_IMM64, dst, src, 0, rel & 0xFFFFFFFF, (), label)
        if not (arg[0].isdigit() or arg[0] in "+-"):
            raise _Fail(f"{name}() takes a number, not {arg!r}")
        low = _imm(arg) & 0xFFFFFFFF
        if second is None:
            if src in (op.BPF_PSEUDO_MAP_VALUE, op.BPF_PSEUDO_MAP_IDX_VALUE):
                raise _Fail(f"{name}() takes two arguments: index or fd, and value offset")
            high = 0
        else:
            if src in (op.BPF_PSEUDO_MAP_FD, op.BPF_PSEUDO_MAP_IDX):
                raise _Fail(f"{name}() takes one argument")
            high = _imm(second) & 0xFFFFFFFF
        return Insn(op.LD_IMM64, dst, src, 0, high << 32 | low)
    fm = _RE_RHS_FETCH.match(rest)
    if fm:
        size = _atomic_size(fm.group(2), fm.group(3))
        _same_width(p, fm.group(7))
        if (p == "r") != (size == op.BPF_DW):
            raise _Fail("atomic_fetch on u64 uses r-registers, on u32 w-registers")
        src = _reg(fm.group(8))
        if src != dst:
            raise _Fail("atomic_fetch returns the old value in its source register: both must match")
        imm = _RMW_NAME[fm.group(1)] | op.BPF_FETCH
        return Insn(op.BPF_STX | op.BPF_ATOMIC | size, _reg(fm.group(4)), src, _off(fm.group(5), fm.group(6)), imm)
    xm = _RE_RHS_XCHG.match(rest)
    if xm:
        size = op.BPF_DW if xm.group(1) == "xchg_64" else op.BPF_W
        _same_width(p, xm.group(5))
        if (p == "r") != (size == op.BPF_DW):
            raise _Fail("xchg_64 uses r-registers, xchg32_32 w-registers")
        src = _reg(xm.group(6))
        if src != dst:
            raise _Fail("xchg returns the old value in its source register: both must match")
        return Insn(
            op.BPF_STX | op.BPF_ATOMIC | size, _reg(xm.group(2)), src, _off(xm.group(3), xm.group(4)), op.BPF_XCHG
        )
    cm = _RE_RHS_CMPXCHG.match(rest)
    if cm:
        size = op.BPF_DW if cm.group(1) == "cmpxchg_64" else op.BPF_W
        if (p == "r") != (size == op.BPF_DW) or dst != 0:
            raise _Fail("cmpxchg returns in r0 (cmpxchg_64) or w0 (cmpxchg32_32)")
        _same_width(p, cm.group(5))
        _same_width(p, cm.group(6))
        return Insn(
            op.BPF_STX | op.BPF_ATOMIC | size,
            _reg(cm.group(2)),
            _reg(cm.group(7)),
            _off(cm.group(3), cm.group(4)),
            op.BPF_CMPXCHG,
        )
    am = _RE_RHS_LOAD_ACQ.match(rest)
    if am:
        if am.group(1) != "u" or (p == "r") != (am.group(2) == "64"):
            raise _Fail("load_acquire: r = ((u64 *)...) or w = ((u8|u16|u32 *)...)")
        return Insn(
            op.BPF_STX | op.BPF_ATOMIC | _SIZES[am.group(2)],
            dst,
            _reg(am.group(3)),
            _off(am.group(4), am.group(5)),
            op.BPF_LOAD_ACQ,
        )
    em = _RE_RHS_END.match(rest)
    if em:
        if _reg(em.group(4)) != dst or em.group(3) != "r" or p != "r":
            raise _Fail("byte swaps are rN = le|be|bswap<bits> rN with the same register")
        kind = em.group(1)
        code = {
            "le": op.BPF_ALU | op.BPF_END | op.BPF_TO_LE,
            "be": op.BPF_ALU | op.BPF_END | op.BPF_TO_BE,
            "bswap": op.BPF_ALU64 | op.BPF_END | op.BPF_TO_LE,
        }[kind]
        return Insn(code, dst, 0, 0, int(em.group(2)))
    xc = _RE_RHS_CAST.match(rest)
    if xc:
        if p != "r":
            raise _Fail("addr_space_cast needs r-registers")
        dst_as = _num(xc.group(2), 0, 0xFFFF, "address space")
        src_as = _num(xc.group(3), 0, 0xFFFF, "address space")
        return Insn.addr_space_cast(dst, _reg(xc.group(1)), dst_as, src_as)
    raise _Fail("unrecognised right-hand side")


def _parse_ld_pseudo(stmt: str) -> Insn:
    """``ld_pseudo rN, src, imm``: ld_imm64 with src_reg *src*, the low imm *imm* and the high imm 0."""
    m = _RE_LD_PSEUDO.match(stmt)
    if m is None:
        raise _Fail("expected ld_pseudo rN, src, imm")
    if m.group(1) != "r":
        raise _Fail("ld_pseudo loads an r-register")
    src = _num(m.group(3), 0, 10, "ld_pseudo src")
    return Insn(op.LD_IMM64, _reg(m.group(2)), src, 0, _imm(m.group(4)) & 0xFFFFFFFF)


def _atomic_size(sign: str, bits: str) -> int:
    if sign != "u" or bits not in ("32", "64"):
        raise _Fail("atomic read-modify-write works on u32 or u64")
    return _SIZES[bits]


def _fast(stmt: str) -> Insn | None:
    """The commonest shapes without the general parser's checks; None when in doubt."""
    m = _RE_FAST_ALU.match(stmt)
    if m is not None:
        p, d, sym, q, s, num = m.groups()
        dst = int(d)
        if dst > 10:
            return None
        code, off = _FAST_OPS[sym]
        code |= op.BPF_ALU64 if p == "r" else op.BPF_ALU
        if q is not None:
            src = int(s)
            if q != p or src > 10:
                return None
            return Insn(code | op.BPF_X, dst, src, off, 0)
        body = num.lstrip("+-")
        if body[0] == "0" and len(body) > 1:  # hex, binary, octal: the general parser
            return None
        imm = int(num)
        if not -0x80000000 <= imm <= 0xFFFFFFFF:
            return None
        return Insn(code, dst, 0, off, imm - 0x100000000 if imm > 0x7FFFFFFF else imm)
    if stmt[0] == "r":
        m = _RE_FAST_LOAD.match(stmt)
        if m is not None:
            d, bits, b, sign, o = m.groups()
            dst, base, off = int(d), int(b), int(o)
            if dst > 10 or base > 10 or off > 0x7FFF or (o[0] == "0" and len(o) > 1):
                return None
            return Insn(op.BPF_LDX | op.BPF_MEM | _SIZES[bits], dst, base, -off if sign == "-" else off)
        return None
    m = _RE_FAST_STORE.match(stmt)
    if m is not None:
        bits, b, sign, o, sr = m.groups()
        base, src, off = int(b), int(sr), int(o)
        if src > 10 or base > 10 or off > 0x7FFF or (o[0] == "0" and len(o) > 1):
            return None
        return Insn(op.BPF_STX | op.BPF_MEM | _SIZES[bits], base, src, -off if sign == "-" else off)
    return None


_FAST_OPS = {sym: (code, 1 if sym in ("s/=", "s%=") else 0) for sym, code in _ASSIGN_OPS.items()}
_FAST_OPS["="] = (op.BPF_MOV, 0)


def _parse_statement(stmt: str) -> Insn:
    """One instruction (no label, no comment, stripped) -> Insn. Raises _Fail."""
    first = stmt[0]
    if first.isupper():
        m = _RE_FIRST_WORD.match(stmt)
        if m:
            stmt = stmt[: m.end()].lower() + stmt[m.end() :]
            first = stmt[0]
    if first in "rw*":
        insn = _fast(stmt)
        if insn is not None:
            return insn
    if first in "rw":
        m = _RE_ASSIGN.match(stmt)
        if m:
            return _parse_assign(m, stmt[m.end() :])
    elif first == "i":
        m = _RE_IF.match(stmt)
        if m:
            p = m.group(1)
            jmp = op.BPF_JMP if p == "r" else op.BPF_JMP32
            cond = _COND_OPS[m.group(3)]
            off, label = _target(m.group(7), -0x8000, 0x7FFF)
            dst = _reg(m.group(2))
            if m.group(4):
                _same_width(p, m.group(4))
                return Insn(jmp | cond | op.BPF_X, dst, _reg(m.group(5)), off, 0, (), label)
            return Insn(jmp | cond | op.BPF_K, dst, 0, off, _imm(m.group(6)), (), label)
    elif first in "gm":
        m = _RE_GOTO.match(stmt)
        if m:
            kind = m.group(1)
            if kind == "gotol":
                imm, label = _target(m.group(2), -(1 << 31), (1 << 31) - 1)
                return Insn(op.BPF_JMP32 | op.BPF_JA, 0, 0, 0, imm, (), label)
            off, label = _target(m.group(2), -0x8000, 0x7FFF)
            code = op.BPF_JMP | (op.BPF_JA if kind == "goto" else op.BPF_JCOND)
            return Insn(code, 0, 0, off, 0, (), label)
    elif first == "c":
        if stmt.startswith("callx"):
            m = _RE_CALLX.match(stmt)
            if m:
                if m.group(1) != "r":
                    raise _Fail("callx takes an r-register")
                # llvm-mc puts the register in dst_reg; the kernel has no BPF_CALLX and refuses it
                return Insn(op.BPF_JMP | op.BPF_CALL | op.BPF_X, _reg(m.group(2)))
            raise _Fail("expected callx rN")
        m = _RE_CALL.match(stmt)
        if m:
            local, kfunc, kfunc_off, number, name = m.groups()
            call = op.BPF_JMP | op.BPF_CALL
            if local is not None:
                imm, label = _target(local, -(1 << 31), (1 << 31) - 1)
                return Insn(call, 0, op.BPF_PSEUDO_CALL, 0, imm, (), label)
            if kfunc is not None:
                off = 0 if kfunc_off is None else _num(kfunc_off, -0x8000, 0x7FFF, "fd_array index")
                return Insn(call, 0, op.BPF_PSEUDO_KFUNC_CALL, off, _imm(kfunc))
            if number is not None:
                return Insn(call, 0, 0, 0, _imm(number))
            try:
                return Insn(call, 0, 0, 0, helper_id(name))
            except UnknownHelper:  # llvm-mc's "call label" (clang -S writes it): a bpf-to-bpf call
                return Insn(call, 0, op.BPF_PSEUDO_CALL, 0, 0, (), name)
    elif first == "e":
        if stmt == "exit":
            return Insn(op.BPF_JMP | op.BPF_EXIT)
    elif first == "*":
        m = _RE_STORE.match(stmt)
        if m:
            if m.group(1) != "u":
                raise _Fail("stores are *(u8|u16|u32|u64 *)")
            size, base, off = _SIZES[m.group(2)], _reg(m.group(3)), _off(m.group(4), m.group(5))
            if m.group(6):
                if m.group(6) == "w" and size == op.BPF_DW:
                    raise _Fail("a 64-bit store needs an r-register")
                return Insn(op.BPF_STX | op.BPF_MEM | size, base, _reg(m.group(7)), off, 0)
            return Insn(op.BPF_ST | op.BPF_MEM | size, base, 0, off, _imm(m.group(8)))
    elif first == "l":
        if stmt.startswith("ld_pseudo"):
            return _parse_ld_pseudo(stmt)
        m = _RE_LOCK.match(stmt)
        if m:
            size = _atomic_size(m.group(1), m.group(2))
            imm = _RMW_SYM[m.group(6)]
            # llvm-mc reads "lock *(u32 *)(...) += r1" (llvm-objdump prints it without +alu32) but only
            # w-registers for the other 32-bit operations
            if (m.group(7) == "w") != (size == op.BPF_W) and not (imm == op.BPF_ADD and size == op.BPF_W):
                raise _Fail("lock on u64 uses an r-register, on u32 a w-register (or an r-register for +=)")
            return Insn(
                op.BPF_STX | op.BPF_ATOMIC | size, _reg(m.group(3)), _reg(m.group(8)), _off(m.group(4), m.group(5)), imm
            )
    elif first == "s":
        m = _RE_STORE_REL.match(stmt)
        if m:
            if m.group(1) != "u" or (m.group(6) == "r") != (m.group(2) == "64"):
                raise _Fail("store_release: ((u64 *)..., r) or ((u8|u16|u32 *)..., w)")
            size = _SIZES[m.group(2)]
            return Insn(
                op.BPF_STX | op.BPF_ATOMIC | size,
                _reg(m.group(3)),
                _reg(m.group(7)),
                _off(m.group(4), m.group(5)),
                op.BPF_STORE_REL,
            )
    raise _Fail("unrecognised instruction")


# statement text -> Insn: generated programs repeat many lines (spills, calls, exits), and an Insn is an
# immutable value, so a parsed line is reused; bounded so a long-lived process does not grow without end
_cache: dict[str, Insn] = {}
_CACHE_MAX = 8192


def _strip_comment(line: str) -> str:
    for mark in ("#", "//"):
        cut = line.find(mark)
        if cut >= 0:
            line = line[:cut]
    return line


def parse(text: str) -> list[Insn]:
    """Parse assembly *text* into instructions; labels stay symbolic (see ``finalize``).

    Raises AsmSyntaxError (line, column) for text that is not an instruction, an out-of-range number,
    a duplicate label, a label with no instruction after it or an unterminated ``/*`` comment.
    """
    insns: list[Insn] = []
    append = insns.append
    pending: list[str] = []
    seen: dict[str, int] = {}
    pending_line = 0
    cache = _cache
    if "/*" in text:
        text = _blank_block_comments(text)
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if "#" in line or "/" in line:
            line = _strip_comment(line).rstrip()
            if not line:
                continue
        offset = 0  # of the piece in line
        for piece in line.split(";") if ";" in line else (line,):
            start, offset = offset, offset + len(piece) + 1
            stmt = piece.strip()
            if not stmt:
                continue
            if ":" in stmt:
                stmt = _take_labels(stmt, raw, lineno, seen, pending)
                pending_line = lineno
                if not stmt:
                    continue
            if stmt[0] == ".":  # assembler directives (.text, .globl ...) carry no instruction
                continue
            insn = cache.get(stmt)
            if insn is None:
                try:
                    insn = _parse_statement(stmt)
                except _Fail as err:
                    col = raw.find(line) + start + piece.find(stmt) + 1
                    raise AsmSyntaxError(lineno, col + err.col, err.message, raw) from None
                except ValueError as err:  # a malformed number slipping past a pattern
                    col = raw.find(line) + start + piece.find(stmt) + 1
                    raise AsmSyntaxError(lineno, col, str(err), raw) from None
                if len(cache) < _CACHE_MAX:
                    cache[stmt] = insn
            if pending:
                insn = Insn(insn.code, insn.dst_reg, insn.src_reg, insn.off, insn.imm, tuple(pending), insn.target)
                pending.clear()
            append(insn)
    if pending:
        raise AsmSyntaxError(pending_line, 1, f"label {pending[-1]!r} is not followed by an instruction")
    return insns


def _blank_block_comments(text: str) -> str:
    """*text* with every ``/* ... */`` comment replaced by spaces (newlines kept, so lines and columns stay).
    ``#`` and ``//`` comments are left in place: a ``/*`` inside them opens nothing. Raises AsmSyntaxError
    for a ``/*`` that is never closed."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(text[i:end])
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                lineno = text.count("\n", 0, i) + 1
                line_start = text.rfind("\n", 0, i) + 1
                raw = text[line_start:].split("\n", 1)[0]
                raise AsmSyntaxError(lineno, i - line_start + 1, "unterminated /* comment", raw)
            end += 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _take_labels(stmt: str, raw: str, lineno: int, seen: dict[str, int], pending: list[str]) -> str:
    """Move the ``name:`` labels at the start of *stmt* into *pending*; return the rest, stripped."""
    pos = 0
    while True:
        m = _RE_LABEL.match(stmt, pos)
        if m is None:
            return stmt[pos:].strip()
        label = m.group(1)
        if label in seen:
            col = raw.find(label) + 1
            raise AsmSyntaxError(lineno, col, f"label {label!r} already defined on line {seen[label]}", raw)
        seen[label] = lineno
        pending.append(label)
        pos = m.end()


def assemble(text: str, isa: int = 4) -> bytes:
    """Assemble LLVM BPF assembly *text* into little-endian instruction bytes (``finalize(parse(text))``).

    Raises AsmSyntaxError with line and column; a reference to an undefined label is reported on the
    line that uses it. *isa* as in ``finalize``.
    """
    insns = parse(text)
    try:
        return finalize(insns, isa)
    except (UnresolvedLabel, DuplicateLabel) as err:
        lineno, raw = _line_of(text, err.index)
        col = raw.find(err.label) + 1 if err.label in raw else 1
        message = f"label {err.label!r} is not defined"
        if insns[err.index].code == op.BPF_JMP | op.BPF_CALL:
            message = f"call {err.label!r}: unknown helper, and no label {err.label!r} in this program"
        raise AsmSyntaxError(lineno, col, message, raw) from err
    except AsmError as err:
        index = getattr(err, "index", None)
        if index is None:
            raise
        lineno, raw = _line_of(text, index)
        raise AsmSyntaxError(lineno, 1, str(err), raw) from err


def _line_of(text: str, index: int) -> tuple[int, str]:
    """Line number and text of the *index*-th instruction (slow path, errors only)."""
    n = -1
    if "/*" in text:
        text = _blank_block_comments(text)
    for lineno, raw in enumerate(text.splitlines(), 1):
        for piece in _strip_comment(raw).split(";"):
            m = _RE_LABEL.match(piece)
            pos = 0
            while m:
                pos = m.end()
                m = _RE_LABEL.match(piece, pos)
            stmt = piece[pos:].strip()
            if stmt and stmt[0] != ".":
                n += 1
                if n == index:
                    return lineno, raw
    return 0, ""
