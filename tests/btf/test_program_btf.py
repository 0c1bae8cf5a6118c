"""Program BTF for real: the kernel loads our blob, and programs with callbacks/global functions load."""

from __future__ import annotations

import errno

import pytest

from pybpfguard.bpf import _sys
from pybpfguard.bpf._sys.btf import btf_get_info
from pybpfguard.bpf.asm import BPF_DW, R0, R1, R2, R3, R4, R10, Insn, finalize
from pybpfguard.bpf.btf import BtfFuncLinkage, Spec
from pybpfguard.bpf.btf import types as t
from pybpfguard.bpf.btf.program_btf import BTFLoadError, FuncDecl, ProgramBTF, build, load_btf
from pybpfguard.bpf.btf.writer import BTFBuilder, FuncInfo, encode_func_info
from pybpfguard.bpf.errors import SyscallError

BPF_PROG_TYPE_SOCKET_FILTER = 1  # include/uapi/linux/bpf.h: enum bpf_prog_type
PACKET = bytes(64)  # BPF_PROG_TEST_RUN of a socket filter needs >= ETH_HLEN bytes


def slot_of(insns: list[Insn], label: str) -> int:
    """The instruction slot where *label* starts (an ld_imm64 takes two slots)."""
    index = next(i for i, insn in enumerate(insns) if label in insn.labels)
    return sum(insn.slots for insn in insns[:index])


def sum_with_bpf_loop(callback_name: str = "add_index") -> list[Insn]:
    """main: u64 acc = 0; bpf_loop(10, cb, &acc, 0); return acc;  cb(i, ctx): *ctx += i + 1; return 0."""
    return [
        Insn.st_mem(BPF_DW, R10, -8, 0),
        Insn.mov64_imm(R1, 10),
        Insn.ld_func(R2, callback_name),
        Insn.mov64_reg(R3, R10),
        Insn.alu64_imm("add", R3, -8),
        Insn.mov64_imm(R4, 0),
        Insn.call("loop"),
        Insn.ldx_mem(BPF_DW, R0, R10, -8),
        Insn.exit(),
        Insn.ldx_mem(BPF_DW, R0, R2, 0).labelled(callback_name),  # r1 = index, r2 = ctx
        Insn.alu64_reg("add", R0, R1),
        Insn.alu64_imm("add", R0, 1),
        Insn.stx_mem(BPF_DW, R2, R0, 0),
        Insn.mov64_imm(R0, 0),
        Insn.exit(),
    ]


def test_built_blob_reads_back_with_one_func_per_function_in_insn_order() -> None:
    blob, func_info = build([FuncDecl("cb", 9, nargs=2), FuncDecl("prog", 0, nargs=1)])
    spec = Spec(blob)
    funcs = [typ for typ in spec if isinstance(typ, t.Func)]
    assert [f.name for f in funcs] == ["prog", "cb"]
    assert [len(spec.type_by_id(f.type_id).params) for f in funcs] == [1, 2]
    assert func_info == encode_func_info([FuncInfo(0, funcs[0].id), FuncInfo(9, funcs[1].id)])


def test_func_info_must_start_at_insn_zero_and_increase() -> None:
    with pytest.raises(ValueError, match="must start at 0"):
        encode_func_info([FuncInfo(3, 1)])
    with pytest.raises(ValueError, match="strictly increase"):
        encode_func_info([FuncInfo(0, 1), FuncInfo(0, 2)])
    with pytest.raises(ValueError, match="not a C identifier"):
        build([FuncDecl("not valid", 0)])


@pytest.mark.kernel
def test_kernel_accepts_the_blob_and_gives_back_the_same_bytes() -> None:
    blob, _ = build([FuncDecl("prog", 0, nargs=1, linkage=BtfFuncLinkage.BTF_FUNC_GLOBAL)])
    with load_btf(blob) as fd:
        info = btf_get_info(fd, with_data=True)
    assert info.data == blob and not info.kernel_btf and info.id > 1


@pytest.mark.kernel
def test_blob_the_kernel_refuses_raises_with_the_btf_verifier_log() -> None:
    b = BTFBuilder()
    b.add_ptr(7)  # dangling: the builder refuses it, so patch the bytes the way a buggy writer would
    b._refs.clear()
    with pytest.raises(BTFLoadError) as err:
        load_btf(b.encode(), what="dangling")
    assert err.value.errno == errno.EINVAL and err.value.log
    assert "BPF_BTF_LOAD dangling: EINVAL" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.kernel
def test_socket_filter_with_a_bpf_loop_callback_loads_with_program_btf_and_runs() -> None:
    insns = sum_with_bpf_loop()
    code = finalize(insns)
    assert slot_of(insns, "add_index") == 10
    funcs = [FuncDecl("prog", 0, nargs=1), FuncDecl("add_index", slot_of(insns, "add_index"), nargs=2)]
    with (
        ProgramBTF.load(funcs) as pbtf,
        _sys.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, code, b"GPL", **pbtf.prog_load_args()) as prog,
    ):
        result = _sys.prog_test_run(prog, PACKET)
    assert result.retval == sum(range(1, 11))


@pytest.mark.kernel
def test_same_program_without_func_info_is_refused() -> None:
    with pytest.raises(SyscallError) as err:
        _sys.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, finalize(sum_with_bpf_loop()), b"GPL").close()
    assert err.value.errno == errno.EINVAL


@pytest.mark.kernel
def test_global_function_with_scalar_args_is_verified_on_its_own_and_runs() -> None:
    """main: return twice(21);  global long twice(long x) { return x + x; }"""
    code = finalize(
        [
            Insn.mov64_imm(R1, 21),
            Insn.call_local("twice"),
            Insn.exit(),
            Insn.mov64_reg(R0, R1).labelled("twice"),
            Insn.alu64_reg("add", R0, R1),
            Insn.exit(),
        ]
    )
    funcs = [FuncDecl("prog", 0, nargs=1), FuncDecl("twice", 3, nargs=1, linkage=BtfFuncLinkage.BTF_FUNC_GLOBAL)]
    with (
        ProgramBTF.load(funcs) as pbtf,
        _sys.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, code, b"GPL", **pbtf.prog_load_args()) as prog,
    ):
        assert _sys.prog_test_run(prog, PACKET).retval == 42


@pytest.mark.kernel
def test_program_load_takes_program_btf_through_the_loader_interface() -> None:
    from pybpfguard.bpf.program import Program, ProgramSpec
    from pybpfguard.bpf.types import ProgType

    insns = sum_with_bpf_loop()
    funcs = [FuncDecl("prog", 0, nargs=1), FuncDecl("add_index", slot_of(insns, "add_index"), nargs=2)]
    spec = ProgramSpec("btf_loop", ProgType.BPF_PROG_TYPE_SOCKET_FILTER, insns)
    with ProgramBTF.load(funcs) as pbtf, Program.load(spec, prog_btf=pbtf) as prog:
        assert _sys.prog_test_run(prog.fd, PACKET).retval == 55
