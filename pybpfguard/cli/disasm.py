"""``disasm [FILE|-] [--hex] [--lenient]``: raw little-endian instructions -> LLVM BPF assembly text.

With ``--hex`` the input is hex text (whitespace and ``#`` comments ignored). Strict by default: an
invalid instruction is an error on stderr naming its slot and every reason, exit status 1.
"""

from __future__ import annotations

import argparse
import re
import sys

from pybpfguard.bpf.asm import AsmError, disassemble


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", help="raw instruction file, '-' (default) for stdin")
    parser.add_argument("--hex", action="store_true", help="read hex text instead of raw bytes")
    parser.add_argument("--lenient", action="store_true", help="print what can be printed of invalid slots")
    parser.add_argument("--no-labels", action="store_true", help="print jump offsets instead of L<slot> labels")


def _read(args: argparse.Namespace) -> bytes:
    if args.file == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(args.file, "rb") as f:
            data = f.read()
    if not args.hex:
        return data
    text = re.sub(r"#[^\n]*", "", data.decode("ascii", errors="replace"))
    digits = re.sub(r"\s+", "", text)
    return bytes.fromhex(digits)


def run(args: argparse.Namespace) -> int:
    name = "<stdin>" if args.file == "-" else args.file
    try:
        code = _read(args)
    except OSError as err:
        print(f"{args.prog} disasm: {name}: {err.strerror}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"{args.prog} disasm: {name}: not hex text: {err}", file=sys.stderr)
        return 1
    try:
        text = disassemble(code, lenient=args.lenient, labels=not args.no_labels)
    except AsmError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0
