"""Turn a generated :class:`AgentProgram` into a kernel :class:`Program`, resolving its maps by name."""

from __future__ import annotations

from collections.abc import Mapping

from pybpfguard.agent.programs.emit import AgentProgram
from pybpfguard.bpf.btf.program_btf import FuncDecl, ProgramBTF
from pybpfguard.bpf.btf.spec import Spec as BtfSpec
from pybpfguard.bpf.maps import Map
from pybpfguard.bpf.program import Program, ProgramSpec
from pybpfguard.bpf.types import AttachType, ProgType

# section word -> (program type, expected attach type)
_KINDS: dict[str, tuple[ProgType, AttachType]] = {
    "tp_btf": (ProgType.BPF_PROG_TYPE_TRACING, AttachType.BPF_TRACE_RAW_TP),
    "iter": (ProgType.BPF_PROG_TYPE_TRACING, AttachType.BPF_TRACE_ITER),
    "lsm": (ProgType.BPF_PROG_TYPE_LSM, AttachType.BPF_LSM_MAC),
}


def program_spec(prog: AgentProgram, attach_btf_id: int = 0) -> ProgramSpec:
    """The library spec for *prog* (``attach`` = ``<kind>/<target>``). *attach_btf_id* is the target's
    id when the caller already knows it (pybpfguard.agent.btfcache); 0 resolves ``attach_to`` at load."""
    kind, _, target = prog.attach.partition("/")
    prog_type, attach_type = _KINDS[kind]
    return ProgramSpec(name=prog.name, prog_type=prog_type, insns=prog.insns, license=prog.license,
                       expected_attach_type=attach_type, attach_btf_id=attach_btf_id, attach_to=target)


def load_program(prog: AgentProgram, maps: Mapping[str, Map], kernel_btf: BtfSpec | None = None,
                 attach_btf_id: int = 0) -> Program:
    """Load *prog* with ``fd_array`` = its maps (borrowed) in the order the program names them.

    *attach_btf_id*: as :func:`program_spec`; when 0 the target is resolved in *kernel_btf* (vmlinux by
    default). Raises KeyError naming a map the caller did not supply, and the loader's errors
    (VerifierError, TypeNotFoundError ...).
    """
    missing = [name for name in prog.maps if name not in maps]
    if missing:
        raise KeyError(f"program {prog.name} needs maps {missing} that were not created")
    spec, fd_array = program_spec(prog, attach_btf_id), [maps[name].fd for name in prog.maps]
    if not prog.functions:
        return Program.load(spec, kernel_btf=kernel_btf, fd_array=fd_array)
    with ProgramBTF.load(function_decls(prog)) as prog_btf:  # the loaded program keeps its own reference
        return Program.load(spec, kernel_btf=kernel_btf, fd_array=fd_array, prog_btf=prog_btf)


def function_decls(prog: AgentProgram) -> list[FuncDecl]:
    """The ``func_info`` functions of *prog*: its main program (one argument, the context) and each
    subprogram at the slot of its label (its arguments R1..R5: the verifier checks a static function by
    its callers, so the BTF prototype only counts them)."""
    slot, starts = 0, {}
    for insn in prog.insns:
        for label in insn.labels:
            starts[label] = slot
        slot += insn.slots
    return [FuncDecl(prog.name, 0, nargs=1), *(FuncDecl(name, starts[name], nargs=5) for name in prog.functions)]
