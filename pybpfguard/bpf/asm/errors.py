"""Errors of the instruction layer. Each names what is wrong and where (instruction index, line:column
or byte offset) and carries those as attributes, so callers never parse the message."""

from __future__ import annotations

from pybpfguard.bpf.errors import BPFError


class AsmError(BPFError, ValueError):
    """Root of every assembler, encoder and decoder error."""


def _at(index: int | None) -> str:
    return "" if index is None else f"insn {index}: "


class FieldRangeError(AsmError):
    """A field does not fit its encoding: ``off`` is int16, ``imm`` is int32 (or uint32 with the same bits),
    registers are 0..10. ``index`` is the instruction index (None when the insn was not in a program)."""

    def __init__(self, field: str, value: int, low: int, high: int, index: int | None = None) -> None:
        self.field, self.value, self.low, self.high, self.index = field, value, low, high, index
        super().__init__(f"{_at(index)}{field} {value:#x} ({value}) outside [{low}, {high}]")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return type(self), (self.field, self.value, self.low, self.high, self.index)


class UnresolvedLabel(AsmError):
    """An instruction refers to a label no instruction carries."""

    def __init__(self, index: int, label: str) -> None:
        self.index, self.label = index, label
        super().__init__(f"insn {index}: label {label!r} is not defined")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return type(self), (self.index, self.label)


class DuplicateLabel(AsmError):
    """Two instructions carry the same label."""

    def __init__(self, index: int, label: str, first_index: int) -> None:
        self.index, self.label, self.first_index = index, label, first_index
        super().__init__(f"insn {index}: label {label!r} already defined at insn {first_index}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return type(self), (self.index, self.label, self.first_index)


class JumpOutOfRange(AsmError):
    """A jump's distance (in 8-byte slots, target - pc - 1) does not fit its field: int16 ``off``
    without ISA v4, int32 ``imm`` of gotol with it."""

    def __init__(self, index: int, distance: int, limit: int) -> None:
        self.index, self.distance, self.limit = index, distance, limit
        super().__init__(
            f"insn {index}: jump distance {distance} slots exceeds ±{limit} "
            "(ISA v4 relaxes it to gotol: finalize(isa=4))"
        )

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return type(self), (self.index, self.distance, self.limit)


class InvalidJumpTarget(AsmError):
    """A jump lands outside the program or in the second slot of an ld_imm64."""

    def __init__(self, index: int, target_slot: int, reason: str) -> None:
        self.index, self.target_slot, self.reason = index, target_slot, reason
        super().__init__(f"insn {index}: jump to slot {target_slot}: {reason}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return type(self), (self.index, self.target_slot, self.reason)


class UnknownHelper(AsmError):
    """A helper name or id that is not in ``enum bpf_func_id``."""

    def __init__(self, helper: str | int) -> None:
        self.helper = helper
        super().__init__(f"unknown BPF helper {helper!r} (not in enum bpf_func_id)")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return type(self), (self.helper,)


class AsmSyntaxError(AsmError):
    """Assembly text that does not parse; ``line`` and ``column`` are 1-based."""

    def __init__(self, line: int, column: int, message: str, text: str = "") -> None:
        self.line, self.column, self.message, self.text = line, column, message, text
        where = f"\n  {text}\n  {' ' * (column - 1)}^" if text else ""
        super().__init__(f"{line}:{column}: {message}{where}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return type(self), (self.line, self.column, self.message, self.text)


class DecodeError(AsmError):
    """Bytes that are not a valid instruction; ``index`` is the slot index (byte offset / 8) and
    ``reasons`` lists every problem found in that instruction."""

    def __init__(self, index: int, reasons: tuple[str, ...] | list[str]) -> None:
        self.index, self.reasons = index, tuple(reasons)
        super().__init__(f"slot {index} (byte {index * 8}): " + "; ".join(self.reasons))

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return type(self), (self.index, self.reasons)
