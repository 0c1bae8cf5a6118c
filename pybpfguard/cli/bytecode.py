"""``bytecode --check | --write | --record-layout``: the program listings in bytecode/.

``--check`` (the default) exits 1 naming each listing that differs from its generator's output;
``--write`` rewrites them; ``--record-layout`` refreshes bytecode/layout.json from the running kernel's BTF
(then ``--write``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pybpfguard.agent import listing
from pybpfguard.bpf.errors import BPFError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if a listing differs (default)")
    mode.add_argument("--write", action="store_true", help="write the listings")
    mode.add_argument("--record-layout", action="store_true", help="record layout.json from this kernel's BTF")
    parser.add_argument("--dir", type=Path, default=listing.BYTECODE_DIR,
                        help="the bytecode directory (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        print(f"{args.prog} bytecode: {args.dir}: not a directory", file=sys.stderr)
        return 1
    try:
        return _run(args)
    except OSError as err:  # no layout.json there, or a listing that cannot be read or written
        print(f"{args.prog} bytecode: {err.filename or args.dir}: {err.strerror}", file=sys.stderr)
    except (ValueError, BPFError) as err:  # a layout.json that is not JSON or not a layout; no kernel BTF
        print(f"{args.prog} bytecode: {args.dir / listing.LAYOUT_FILE}: {err}", file=sys.stderr)
    return 1


def _run(args: argparse.Namespace) -> int:
    if args.record_layout:
        listing.record_layout(args.dir)
        print(f"recorded {args.dir / listing.LAYOUT_FILE}")
        return 0
    if args.write:
        for name in listing.write(args.dir):
            print(f"wrote {args.dir / name}")
        return 0
    stale = listing.stale(args.dir)
    for name in stale:
        print(f"{args.dir / name}: differs from its generator; run `{args.prog} bytecode --write`", file=sys.stderr)
    return 1 if stale else 0
