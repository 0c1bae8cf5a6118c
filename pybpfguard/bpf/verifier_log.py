"""Reading a verifier log: which instruction failed, and the verifier's last words.

The log format is the kernel's (kernel/bpf/verifier.c, ``print_bpf_insn`` and ``verbose()``): at log level
1 each instruction the verifier walks is printed as ``<index>: (<opcode hex>) <text>``; the message that
ends verification follows the last such line; statistics (``processed N insns ...``, ``verification
time ...``) close the log. Checks that run before the walk (CFG, helper lookup) name the instruction in the
message instead (``jump out of range from insn 3 to 9``, ``unreachable insn 4``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_INSN_LINE = re.compile(r"^(\d+): \(([0-9a-f]{2})\) (.*)$")
_INSN_IN_MESSAGE = re.compile(r"\binsn #?(\d+)")
_STATISTICS = ("processed ", "verification time ", "stack depth ", "func#")
_MAX_SUMMARY_LINES = 2


@dataclass(frozen=True, slots=True)
class LogSummary:
    """What a one-line error needs from a log.

    ``insn_index``: the failing instruction's slot index, or None; ``insn_text``: the verifier's own
    rendering of it (``r2 = *(u32 *)(r1 +0)``) or ""; ``last_lines``: the verifier's final message lines
    (at most two, statistics left out); ``omitted``: how many other non-empty lines the log holds.
    """

    insn_index: int | None
    insn_text: str
    last_lines: tuple[str, ...]
    omitted: int


def summarize(log: str) -> LogSummary:
    """Summarize a verifier log (any level). An empty log gives an empty summary."""
    lines = [line.rstrip() for line in log.splitlines() if line.strip()]
    last_insn = None
    last_insn_pos = -1
    for pos, line in enumerate(lines):
        m = _INSN_LINE.match(line)
        if m:
            last_insn, last_insn_pos = m, pos
    tail = [
        line for line in lines[last_insn_pos + 1 :] if not line.startswith(_STATISTICS) and not _INSN_LINE.match(line)
    ]
    if not tail and lines:
        tail = [lines[-1]]
    shown = tuple(tail[-_MAX_SUMMARY_LINES:])
    insn_index = int(last_insn.group(1)) if last_insn else None
    insn_text = last_insn.group(3) if last_insn else ""
    if insn_index is None:
        for line in reversed(shown):
            m = _INSN_IN_MESSAGE.search(line)
            if m:
                insn_index = int(m.group(1))
                break
    omitted = len(lines) - len(shown)
    return LogSummary(insn_index, insn_text, shown, omitted)
