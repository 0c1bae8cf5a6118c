"""Reading verifier logs without a kernel: the failing instruction and the last words, statistics left out."""

from pybpfguard.bpf.verifier_log import summarize

CFG_ERROR = "jump out of range from insn 3 to 9\nprocessed 0 insns (limit 1000000)\n"
WALK_ERROR = """func#0 @0
0: R1=ctx() R10=fp0
0: (b7) r0 = 0                        ; R0=0
1: (85) call bpf_map_lookup_elem#1
R1 type=scalar expected=map_ptr
processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""


def test_walk_error_names_the_last_walked_insn_and_the_message_after_it():
    s = summarize(WALK_ERROR)
    assert (s.insn_index, s.insn_text, s.last_lines) == (
        1,
        "call bpf_map_lookup_elem#1",
        ("R1 type=scalar expected=map_ptr",),
    )
    assert s.omitted == 5


def test_cfg_error_before_the_walk_takes_the_index_from_the_message():
    s = summarize(CFG_ERROR)
    assert (s.insn_index, s.last_lines) == (3, ("jump out of range from insn 3 to 9",))


def test_empty_log_gives_an_empty_summary():
    s = summarize("")
    assert (s.insn_index, s.last_lines, s.omitted) == (None, (), 0)
