"""``Insn``: one BPF instruction as a value, with a constructor for every instruction kind.

Fields keep the kernel's names (``struct bpf_insn`` in include/uapi/linux/bpf.h): ``code``,
``dst_reg``, ``src_reg``, ``off`` (int16), ``imm`` (int32). Two more fields are ours:

- ``labels``: the names this instruction carries (jump targets), set with ``labelled()``;
- ``target``: the label a jump, a local call or an ``ld_func`` refers to. ``finalize()`` turns it into a
  slot offset; until then ``off``/``imm`` hold 0;
- ``note``: what the instruction means to its generator (``task_struct->real_parent``), set with
  ``noted()`` and printed as a comment by listings. It is no part of the value: equality, hashing and
  the encoding ignore it.

An ld_imm64 (``code == 0x18``) is one ``Insn`` whose ``imm`` holds the whole 64-bit value (0 .. 2**64-1,
low word first on the wire); it takes two 8-byte slots. Constructors normalise a 32-bit ``imm`` so that
-1 and 0xffffffff are the same value (the kernel sign-extends imm to 64 bits where it is used as 64-bit).
Values that do not fit are kept as given and refused by ``finalize()`` with the instruction's index.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pybpfguard.bpf.asm import opcodes as op
from pybpfguard.bpf.asm.errors import FieldRangeError
from pybpfguard.bpf.asm.helpers import helper_id

_U32 = 1 << 32
_U64 = 1 << 64


def imm32(value: int) -> int:
    """Map *value* to the signed 32-bit imm with the same bits: 0xffffffff -> -1. Values outside
    [-2**31, 2**32) are returned unchanged (``finalize`` refuses them with the index)."""
    if 0x80000000 <= value < _U32:
        return value - _U32
    return value


def _imm64(value: int) -> int:
    """ld_imm64 value as u64: -1 and 0xffffffffffffffff are the same; out-of-range values pass through."""
    if -(1 << 63) <= value < 0:
        return value + _U64
    return value


def _size(size: int) -> int:
    if size not in op.SIZE_BYTES:
        raise ValueError(f"size {size:#x} is not BPF_B, BPF_H, BPF_W or BPF_DW")
    return size


def _alu_op(name: str | int) -> tuple[int, int]:
    if isinstance(name, str):
        try:
            return op.ALU_OPS[name]
        except KeyError:
            raise ValueError(f"unknown ALU operation {name!r} (one of {', '.join(op.ALU_OPS)})") from None
    return name, 0


def _cond(cond: str | int) -> int:
    if isinstance(cond, str):
        try:
            return op.JMP_CONDS[cond]
        except KeyError:
            raise ValueError(f"unknown jump condition {cond!r} (one of {', '.join(op.JMP_CONDS)})") from None
    return cond


def _to(to: str | int) -> tuple[int, str | None]:
    """A jump destination: a label (resolved by finalize) or a raw slot offset (target - pc - 1)."""
    return (0, to) if isinstance(to, str) else (to, None)


@dataclass(frozen=True, slots=True)
class Insn:
    """One instruction (two slots for ld_imm64). Build with the class methods; see the module doc."""

    code: int
    dst_reg: int = 0
    src_reg: int = 0
    off: int = 0
    imm: int = 0
    labels: tuple[str, ...] = ()
    target: str | None = None
    note: str | None = field(default=None, compare=False)

    # ---- metadata -------------------------------------------------------------------------------------

    def labelled(self, label: str) -> Insn:
        """A copy of this instruction that also carries *label*."""
        return replace(self, labels=(*self.labels, label))

    def noted(self, note: str) -> Insn:
        """A copy of this instruction annotated with *note* (a listing comment; see the module doc)."""
        return replace(self, note=note)

    @property
    def slots(self) -> int:
        """Number of 8-byte slots: 2 for ld_imm64, else 1."""
        return 2 if self.code == op.LD_IMM64 else 1

    @property
    def cls(self) -> int:
        """The instruction class (``BPF_ALU64``, ``BPF_JMP``, ...)."""
        return self.code & 0x07

    def __str__(self) -> str:
        from pybpfguard.bpf.asm.disasm import format_insn

        return format_insn(self)

    # ---- ALU / ALU64 -----------------------------------------------------------------------------------

    @classmethod
    def alu64_imm(cls, alu_op: str | int, dst: int, imm: int) -> Insn:
        """``dst op= imm`` on 64 bits; *alu_op* is a name (``"add"``, ``"sdiv"``) or ``BPF_ADD``..."""
        code, off = _alu_op(alu_op)
        return cls(op.BPF_ALU64 | code | op.BPF_K, dst, 0, off, imm32(imm))

    @classmethod
    def alu64_reg(cls, alu_op: str | int, dst: int, src: int) -> Insn:
        """``dst op= src`` on 64 bits."""
        code, off = _alu_op(alu_op)
        return cls(op.BPF_ALU64 | code | op.BPF_X, dst, src, off, 0)

    @classmethod
    def alu32_imm(cls, alu_op: str | int, dst: int, imm: int) -> Insn:
        """``wdst op= imm`` on 32 bits; the result is zero-extended into the 64-bit register."""
        code, off = _alu_op(alu_op)
        return cls(op.BPF_ALU | code | op.BPF_K, dst, 0, off, imm32(imm))

    @classmethod
    def alu32_reg(cls, alu_op: str | int, dst: int, src: int) -> Insn:
        """``wdst op= wsrc`` on 32 bits."""
        code, off = _alu_op(alu_op)
        return cls(op.BPF_ALU | code | op.BPF_X, dst, src, off, 0)

    @classmethod
    def mov64_imm(cls, dst: int, imm: int) -> Insn:
        """``dst = imm`` (sign-extended: -10 gives 0xfffffffffffffff6)."""
        return cls(op.BPF_ALU64 | op.BPF_MOV | op.BPF_K, dst, 0, 0, imm32(imm))

    @classmethod
    def mov64_reg(cls, dst: int, src: int) -> Insn:
        """``dst = src``."""
        return cls(op.BPF_ALU64 | op.BPF_MOV | op.BPF_X, dst, src, 0, 0)

    @classmethod
    def mov32_imm(cls, dst: int, imm: int) -> Insn:
        """``wdst = imm`` (zero-extended: -10 gives 0x00000000fffffff6)."""
        return cls(op.BPF_ALU | op.BPF_MOV | op.BPF_K, dst, 0, 0, imm32(imm))

    @classmethod
    def mov32_reg(cls, dst: int, src: int) -> Insn:
        """``wdst = wsrc``."""
        return cls(op.BPF_ALU | op.BPF_MOV | op.BPF_X, dst, src, 0, 0)

    @classmethod
    def movsx64(cls, dst: int, src: int, bits: int) -> Insn:
        """``dst = (s8|s16|s32) src``: sign-extending move (ISA v4, off = 8/16/32)."""
        if bits not in (8, 16, 32):
            raise ValueError(f"movsx64 bits must be 8, 16 or 32, not {bits}")
        return cls(op.BPF_ALU64 | op.BPF_MOV | op.BPF_X, dst, src, bits, 0)

    @classmethod
    def movsx32(cls, dst: int, src: int, bits: int) -> Insn:
        """``wdst = (s8|s16) wsrc``: sign-extending 32-bit move (ISA v4, off = 8/16)."""
        if bits not in (8, 16):
            raise ValueError(f"movsx32 bits must be 8 or 16, not {bits}")
        return cls(op.BPF_ALU | op.BPF_MOV | op.BPF_X, dst, src, bits, 0)

    @classmethod
    def addr_space_cast(cls, dst: int, src: int, dst_as: int, src_as: int) -> Insn:
        """``dst = addr_space_cast(src, dst_as, src_as)`` (arena pointers, Linux 6.9):
        ALU64 MOV X with off = BPF_ADDR_SPACE_CAST, imm = dst_as << 16 | src_as."""
        return cls(op.BPF_ALU64 | op.BPF_MOV | op.BPF_X, dst, src, op.BPF_ADDR_SPACE_CAST, dst_as << 16 | src_as)

    @classmethod
    def neg64(cls, dst: int) -> Insn:
        """``dst = -dst``."""
        return cls(op.BPF_ALU64 | op.BPF_NEG, dst)

    @classmethod
    def neg32(cls, dst: int) -> Insn:
        """``wdst = -wdst``."""
        return cls(op.BPF_ALU | op.BPF_NEG, dst)

    @classmethod
    def le(cls, dst: int, bits: int) -> Insn:
        """``dst = le16|le32|le64 dst`` (0xd4): to little endian, truncating to *bits* (a no-op swap on x86)."""
        return cls(op.BPF_ALU | op.BPF_END | op.BPF_TO_LE, dst, 0, 0, _end_bits(bits))

    @classmethod
    def be(cls, dst: int, bits: int) -> Insn:
        """``dst = be16|be32|be64 dst`` (0xdc): to big endian, truncating to *bits*."""
        return cls(op.BPF_ALU | op.BPF_END | op.BPF_TO_BE, dst, 0, 0, _end_bits(bits))

    @classmethod
    def bswap(cls, dst: int, bits: int) -> Insn:
        """``dst = bswap16|32|64 dst`` (0xd7, ISA v4): unconditional byte swap."""
        return cls(op.BPF_ALU64 | op.BPF_END | op.BPF_TO_LE, dst, 0, 0, _end_bits(bits))

    # ---- JMP / JMP32 -----------------------------------------------------------------------------------

    @classmethod
    def jmp_imm(cls, cond: str | int, dst: int, imm: int, to: str | int) -> Insn:
        """``if dst <cond> imm goto to`` (64-bit compare; imm sign-extended). *to*: label or slot offset."""
        off, target = _to(to)
        return cls(op.BPF_JMP | _cond(cond) | op.BPF_K, dst, 0, off, imm32(imm), (), target)

    @classmethod
    def jmp_reg(cls, cond: str | int, dst: int, src: int, to: str | int) -> Insn:
        """``if dst <cond> src goto to`` (64-bit compare)."""
        off, target = _to(to)
        return cls(op.BPF_JMP | _cond(cond) | op.BPF_X, dst, src, off, 0, (), target)

    @classmethod
    def jmp32_imm(cls, cond: str | int, dst: int, imm: int, to: str | int) -> Insn:
        """``if wdst <cond> imm goto to`` (32-bit compare)."""
        off, target = _to(to)
        return cls(op.BPF_JMP32 | _cond(cond) | op.BPF_K, dst, 0, off, imm32(imm), (), target)

    @classmethod
    def jmp32_reg(cls, cond: str | int, dst: int, src: int, to: str | int) -> Insn:
        """``if wdst <cond> wsrc goto to`` (32-bit compare)."""
        off, target = _to(to)
        return cls(op.BPF_JMP32 | _cond(cond) | op.BPF_X, dst, src, off, 0, (), target)

    @classmethod
    def ja(cls, to: str | int) -> Insn:
        """``goto to`` (int16 off; ``finalize(isa=4)`` widens it to gotol when it does not fit)."""
        off, target = _to(to)
        return cls(op.BPF_JMP | op.BPF_JA, 0, 0, off, 0, (), target)

    @classmethod
    def gotol(cls, to: str | int) -> Insn:
        """``gotol to``: JMP32 JA with the offset in the 32-bit imm (ISA v4)."""
        off, target = _to(to)
        return cls(op.BPF_JMP32 | op.BPF_JA, 0, 0, 0, off, (), target)

    @classmethod
    def may_goto(cls, to: str | int) -> Insn:
        """``may_goto to`` (JMP JCOND, Linux 6.9): jumps when the loop budget is spent."""
        off, target = _to(to)
        return cls(op.BPF_JMP | op.BPF_JCOND, 0, 0, off, 0, (), target)

    @classmethod
    def call(cls, helper: str | int) -> Insn:
        """``call helper`` by kernel name (``"ringbuf_reserve"``, ``"bpf_ringbuf_reserve"``) or id.
        Raises UnknownHelper."""
        return cls(op.BPF_JMP | op.BPF_CALL, 0, 0, 0, helper_id(helper))

    @classmethod
    def call_kfunc(cls, btf_id: int, btf_fd_idx: int = 0) -> Insn:
        """Call the kernel function with BTF id *btf_id* (src_reg 2); *btf_fd_idx* indexes fd_array for
        a module's BTF, 0 for vmlinux."""
        return cls(op.BPF_JMP | op.BPF_CALL, 0, op.BPF_PSEUDO_KFUNC_CALL, btf_fd_idx, imm32(btf_id))

    @classmethod
    def call_local(cls, to: str | int) -> Insn:
        """bpf-to-bpf call of the subprogram at label *to* (src_reg 1, imm = target - pc - 1)."""
        imm, target = _to(to)
        return cls(op.BPF_JMP | op.BPF_CALL, 0, op.BPF_PSEUDO_CALL, 0, imm, (), target)

    @classmethod
    def exit(cls) -> Insn:
        """``exit``: return r0."""
        return cls(op.BPF_JMP | op.BPF_EXIT)

    # ---- loads and stores ------------------------------------------------------------------------------

    @classmethod
    def ldx_mem(cls, size: int, dst: int, src: int, off: int) -> Insn:
        """``dst = *(size *)(src + off)``, zero-extended."""
        return cls(op.BPF_LDX | op.BPF_MEM | _size(size), dst, src, off)

    @classmethod
    def ldsx_mem(cls, size: int, dst: int, src: int, off: int) -> Insn:
        """``dst = *(s8|s16|s32 *)(src + off)``, sign-extended (MEMSX, ISA v4; not BPF_DW)."""
        if size == op.BPF_DW:
            raise ValueError("ldsx_mem: sign-extending loads exist for BPF_B, BPF_H and BPF_W only")
        return cls(op.BPF_LDX | op.BPF_MEMSX | _size(size), dst, src, off)

    @classmethod
    def st_mem(cls, size: int, dst: int, off: int, imm: int) -> Insn:
        """``*(size *)(dst + off) = imm`` (BPF_DW stores imm sign-extended)."""
        return cls(op.BPF_ST | op.BPF_MEM | _size(size), dst, 0, off, imm32(imm))

    @classmethod
    def stx_mem(cls, size: int, dst: int, src: int, off: int) -> Insn:
        """``*(size *)(dst + off) = src``."""
        return cls(op.BPF_STX | op.BPF_MEM | _size(size), dst, src, off)

    @classmethod
    def ld_abs(cls, size: int, imm: int) -> Insn:
        """Legacy packet load ``r0 = *(size *)skb[imm]`` (network order converted; not BPF_DW)."""
        return cls(op.BPF_LD | op.BPF_ABS | _size(size), 0, 0, 0, imm32(imm))

    @classmethod
    def ld_ind(cls, size: int, src: int, imm: int = 0) -> Insn:
        """Legacy packet load ``r0 = *(size *)skb[src + imm]``."""
        return cls(op.BPF_LD | op.BPF_IND | _size(size), 0, src, 0, imm32(imm))

    # ---- ld_imm64 (two slots) --------------------------------------------------------------------------

    @classmethod
    def ld_imm64(cls, dst: int, value: int, src: int = 0) -> Insn:
        """``dst = value ll``: a 64-bit constant (or, with *src*, a pseudo source; prefer the named ones)."""
        return cls(op.LD_IMM64, dst, src, 0, _imm64(value))

    @classmethod
    def ld_map_fd(cls, dst: int, map_fd: int) -> Insn:
        """``dst = map_fd(map_fd) ll``: the verifier replaces it with the map's address (BPF_PSEUDO_MAP_FD)."""
        return cls(op.LD_IMM64, dst, op.BPF_PSEUDO_MAP_FD, 0, _u32("imm", map_fd))

    @classmethod
    def ld_map_value(cls, dst: int, map_fd: int, offset: int) -> Insn:
        """``dst = map_value(map_fd, offset) ll``: address of byte *offset* of an array map's value
        (BPF_PSEUDO_MAP_VALUE; fd in the low imm, offset in the high imm)."""
        return cls(op.LD_IMM64, dst, op.BPF_PSEUDO_MAP_VALUE, 0, _pair(map_fd, offset))

    @classmethod
    def ld_btf_id(cls, dst: int, btf_id: int, btf_fd: int = 0) -> Insn:
        """``dst = btf_id(id) ll``: address of a kernel variable by BTF id (BPF_PSEUDO_BTF_ID); the high
        imm holds a module BTF fd, 0 for vmlinux."""
        return cls(op.LD_IMM64, dst, op.BPF_PSEUDO_BTF_ID, 0, _pair(btf_id, btf_fd))

    @classmethod
    def ld_func(cls, dst: int, to: str | int) -> Insn:
        """``dst = func(to) ll``: address of the subprogram at label *to* (BPF_PSEUDO_FUNC, for callbacks)."""
        imm, target = _to(to)
        return cls(op.LD_IMM64, dst, op.BPF_PSEUDO_FUNC, 0, _u32("imm", imm), (), target)

    @classmethod
    def ld_map_idx(cls, dst: int, map_idx: int) -> Insn:
        """``dst = map_idx(i) ll``: the map at index *i* of fd_array (BPF_PSEUDO_MAP_IDX)."""
        return cls(op.LD_IMM64, dst, op.BPF_PSEUDO_MAP_IDX, 0, _u32("imm", map_idx))

    @classmethod
    def ld_map_idx_value(cls, dst: int, map_idx: int, offset: int) -> Insn:
        """``dst = map_idx_value(i, offset) ll`` (BPF_PSEUDO_MAP_IDX_VALUE)."""
        return cls(op.LD_IMM64, dst, op.BPF_PSEUDO_MAP_IDX_VALUE, 0, _pair(map_idx, offset))

    # ---- atomics ---------------------------------------------------------------------------------------

    @classmethod
    def atomic(cls, atomic_op: str | int, size: int, dst: int, src: int, off: int, fetch: bool = False) -> Insn:
        """Atomic read-modify-write on ``*(size *)(dst + off)`` with *src* (BPF_W or BPF_DW).

        *atomic_op*: ``"add"``, ``"and"``, ``"or"``, ``"xor"`` (with *fetch*, the old value goes to src),
        ``"xchg"`` (src <-> memory), ``"cmpxchg"`` (if memory == r0 then memory = src; r0 = old value).
        """
        if isinstance(atomic_op, str):
            try:
                imm = op.ATOMIC_OPS[atomic_op]
            except KeyError:
                names = ", ".join(op.ATOMIC_OPS)
                raise ValueError(f"unknown atomic operation {atomic_op!r} (one of {names})") from None
        else:
            imm = atomic_op
        if fetch:
            imm |= op.BPF_FETCH
        if size not in (op.BPF_W, op.BPF_DW):
            raise ValueError("atomic read-modify-write exists for BPF_W and BPF_DW only")
        return cls(op.BPF_STX | op.BPF_ATOMIC | size, dst, src, off, imm)

    @classmethod
    def load_acquire(cls, size: int, dst: int, src: int, off: int) -> Insn:
        """``dst = load_acquire((size *)(src + off))`` (BPF_LOAD_ACQ, Linux 6.15)."""
        return cls(op.BPF_STX | op.BPF_ATOMIC | _size(size), dst, src, off, op.BPF_LOAD_ACQ)

    @classmethod
    def store_release(cls, size: int, dst: int, src: int, off: int) -> Insn:
        """``store_release((size *)(dst + off), src)`` (BPF_STORE_REL, Linux 6.15)."""
        return cls(op.BPF_STX | op.BPF_ATOMIC | _size(size), dst, src, off, op.BPF_STORE_REL)


def _end_bits(bits: int) -> int:
    if bits not in (16, 32, 64):
        raise ValueError(f"byte swap width must be 16, 32 or 64, not {bits}")
    return bits


def _u32(field: str, value: int) -> int:
    """*value* as the u32 bits of an imm; -1 and 0xffffffff are the same. Raises FieldRangeError."""
    if not -(1 << 31) <= value < _U32:
        raise FieldRangeError(field, value, -(1 << 31), _U32 - 1)
    return value & 0xFFFFFFFF


def _pair(low: int, high: int) -> int:
    """Two 32-bit imms (slot 1, slot 2) as one u64 ld_imm64 value."""
    return _u32("imm", high) << 32 | _u32("imm", low)
