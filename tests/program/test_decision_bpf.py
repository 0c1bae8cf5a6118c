"""The kernel's file decision against the table of cases (tests/decision_table.py), run with BPF_PROG_TEST_RUN.

The LSM programs cannot be test-run (and this host refuses to load them). Their decision is made of the
steps in pybpfguard/agent/programs/deny.py; here the same steps, in the order ``file_open_program`` emits
them, are composed into a BPF_PROG_TYPE_SYSCALL program (test-runnable, same tracing helpers) whose
context is the inode key. Only what needs a hook's arguments is left out: the inode key comes from the
context instead of ``file->f_inode``, the opener's identity in the record is zero, the path is empty.
The real programs are checked against the same table in the VM tier (tests/lsm/test_decision_lsm.py).

Outcome: return ``-EPERM`` (DENY), or 0 with ``block_stats.blocks`` counted (AUDIT), or 0 uncounted (ALLOW).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest

from pybpfguard.agent.decision import Verdict
from pybpfguard.agent.events.records import BLOCK
from pybpfguard.agent.maps import BLOCK_STATS, INODE_KEY, pinned_specs
from pybpfguard.agent.programs import deny
from pybpfguard.agent.programs.emit import AgentProgram, Emitter
from pybpfguard.agent.programs.process import CNT_KEY_OFF, PROC_INFO, VAL_OFF
from pybpfguard.bpf.asm import BPF_DW, BPF_H, BPF_JNE, R1, R2, R7, R10, Insn
from pybpfguard.bpf.maps import Map, MapSpec, MapType
from pybpfguard.bpf.program import Program, ProgramSpec
from pybpfguard.bpf.types import ProgFlags, ProgType
from tests.decision_table import KERNEL_CASES, Case, block_count, kernel_verdict, own_cgid

pytestmark = pytest.mark.kernel

MAPS = ("agent_config", *deny.rule_maps(*deny.FILE_RULE_MAPS), "survival_allowlist", "block_stats",
        "enforce_signal_state", "events")
KEY = INODE_KEY.value(ino=987654321, dev=271581186, pad=0)


def _no_path(e: Emitter) -> None:
    e(Insn.st_mem(BPF_H, R7, BLOCK.offset("path_len"), 0))


def decision_steps_program() -> AgentProgram:
    """The file_open decision steps of programs/deny.py over the inode key in the context (16 bytes)."""
    e = Emitter(maps=MAPS)
    e(Insn.ldx_mem(BPF_DW, R2, R1, 0), Insn.stx_mem(BPF_DW, R10, R2, deny.INODE_OFF),
      Insn.ldx_mem(BPF_DW, R2, R1, 8), Insn.stx_mem(BPF_DW, R10, R2, deny.INODE_OFF + 8))
    for off in range(0, PROC_INFO.size, 8):  # the identity the record copies (a hook reads it from the task)
        e(Insn.st_mem(BPF_DW, R10, VAL_OFF + off, 0))
    deny.load_config(e)
    deny.config(e, R2, "file_policy_empty")
    e(Insn.jmp_imm(BPF_JNE, R2, 0, to="allow"))
    deny.deny_inode_match(e, miss="allow")
    e.count("block_stats", BLOCK_STATS.offset("blocks"), CNT_KEY_OFF)
    deny.effective_audit(e, to="emit")
    deny.signal(e)
    deny.block_event_and_verdict(e, _no_path)
    return e.program("decision_steps", "syscall", "")


@pytest.fixture
def maps(kernel: None) -> Iterator[dict[str, Map]]:
    specs = pinned_specs(max_deny_inodes=64)
    made = {name: Map.create(specs[name]) for name in MAPS if name in specs}
    made["rule_set"].update_elem(0, 0)
    made["enforce_signal_state"] = Map.create(MapSpec(MapType.BPF_MAP_TYPE_LRU_HASH, 64, name="sigstat",
                                                      key_layout=deny.SIGNAL_STATE_KEY,
                                                      value_layout=deny.SIGNAL_STATE))
    made["events"] = Map.create(MapSpec(MapType.BPF_MAP_TYPE_RINGBUF, 1 << 16, name="events"))
    try:
        yield made
    finally:
        for m in made.values():
            m.close()


@pytest.fixture
def program(maps: dict[str, Map]) -> Iterator[Program]:
    gen = decision_steps_program()
    spec = ProgramSpec(name=gen.name, prog_type=ProgType.BPF_PROG_TYPE_SYSCALL, insns=gen.insns,
                       license=gen.license, prog_flags=ProgFlags.BPF_F_SLEEPABLE)
    with Program.load(spec, fd_array=[maps[name].fd for name in gen.maps]) as prog:
        yield prog


@pytest.mark.parametrize("case", KERNEL_CASES, ids=lambda c: c.name)
def test_kernel_decision_steps_decide_every_case_of_the_table(maps: dict[str, Map], program: Program,
                                                              case: Case) -> None:
    if case.cgroup_scoped:
        pytest.skip("programs read deny_cgroup_inode: lead's change")
    case.load_maps(maps, KEY, own_cgid())
    before = block_count(maps["block_stats"])
    retval = program.test_run(ctx=INODE_KEY.pack(KEY), repeat=0).retval
    counted = block_count(maps["block_stats"]) - before
    assert retval in (0, -errno.EPERM & 0xFFFFFFFF)
    assert kernel_verdict(retval != 0, counted) is case.expect
    assert counted == (case.expect is not Verdict.ALLOW)


def test_the_key_is_not_matched_under_another_inode(maps: dict[str, Map], program: Program) -> None:
    next(c for c in KERNEL_CASES if c.name == "deny-always-enforce").load_maps(maps, KEY, 0)
    assert maps["deny_inode"].get(KEY) is not None
    other = INODE_KEY.value(ino=1, dev=271581186, pad=0)
    ctx = INODE_KEY.pack(other)
    assert program.test_run(ctx=ctx, repeat=0).retval == 0



def test_only_the_live_rule_set_decides(maps: dict[str, Map], program: Program) -> None:
    """A rule in the idle set denies nothing; one write of ``rule_set`` makes it (and only it) live."""
    case = next(c for c in KERNEL_CASES if c.name == "deny-always-enforce")
    case.load_maps(maps, KEY, 0)  # set 0 denies KEY
    maps["deny_inode"].delete_elem(KEY)
    maps["deny_inode_1"].update_elem(KEY, 1)  # only set 1 does
    ctx = INODE_KEY.pack(KEY)
    assert program.test_run(ctx=ctx, repeat=0).retval == 0
    maps["rule_set"].update_elem(0, 1)
    assert program.test_run(ctx=ctx, repeat=0).retval == -errno.EPERM & 0xFFFFFFFF
    maps["rule_set"].update_elem(0, 0)
    assert program.test_run(ctx=ctx, repeat=0).retval == 0


def test_a_cgroup_scoped_rule_is_not_exempted_by_allow_cgroup(maps: dict[str, Map], program: Program) -> None:
    from pybpfguard.agent.maps import CGROUP_INODE_KEY

    cgid = own_cgid()
    next(c for c in KERNEL_CASES if c.name == "deny-always-enforce").load_maps(maps, KEY, cgid)
    maps["deny_inode"].delete_elem(KEY)
    maps["allow_cgroup"].update_elem(cgid, 1)
    cg_key = CGROUP_INODE_KEY.value(cgid=cgid, ino=KEY.ino, dev=KEY.dev, pad=0)
    maps["deny_cgroup_inode"].update_elem(cg_key, 1)
    ctx = INODE_KEY.pack(KEY)
    assert program.test_run(ctx=ctx, repeat=0).retval == -errno.EPERM & 0xFFFFFFFF
    maps["deny_cgroup_inode"].delete_elem(cg_key)
    maps["deny_cgroup_inode"].update_elem(CGROUP_INODE_KEY.value(cgid=cgid + 1, ino=KEY.ino, dev=KEY.dev, pad=0), 1)
    assert program.test_run(ctx=ctx, repeat=0).retval == 0  # another cgroup's rule
