"""``asm [FILE|-] [--hex]``: LLVM BPF assembly text -> raw little-endian instructions on stdout.

With ``--hex`` the output is hex text, one 8-byte slot per line. Errors go to stderr as
``FILE:LINE:COLUMN: message`` with exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pybpfguard.bpf.asm import AsmError, AsmSyntaxError, assemble


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", help="assembly text file, '-' (default) for stdin")
    parser.add_argument("--hex", action="store_true", help="write hex text, one slot per line")
    parser.add_argument("--isa", type=int, default=4, choices=(1, 2, 3, 4),
                        help="highest ISA version of the target (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    name = "<stdin>" if args.file == "-" else args.file
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except OSError as err:
        print(f"{args.prog} asm: {name}: {err.strerror}", file=sys.stderr)
        return 1
    try:
        code = assemble(text, isa=args.isa)
    except AsmSyntaxError as err:
        print(f"{name}:{err}", file=sys.stderr)
        return 1
    except AsmError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 1
    if args.hex:
        sys.stdout.write("".join(code[i : i + 8].hex(" ") + "\n" for i in range(0, len(code), 8)))
    else:
        sys.stdout.buffer.write(code)
        sys.stdout.flush()
    return 0
