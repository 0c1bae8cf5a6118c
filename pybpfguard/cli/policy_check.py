"""``policy lint [--fix [--out P]]``, ``policy validate [-v]`` and ``policy canonical`` (docs/policy.md).

All three read one policy file (``-`` reads stdin) and stop at its first error, printed on stderr as
``<file>: line N: <message>`` with exit status 1. Findings that are not errors (lint advisories, and the
notices for sections this release accepts but does not enforce) go to stdout, with exit status 0; when the
canonical form itself goes to stdout (``--out -``), they go to stderr instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from pybpfguard.agent.policy.lint import SECTION_ORDER, Advisory, advisories, entry_text
from pybpfguard.agent.policy.lint import canonical as canonical_text
from pybpfguard.agent.policy.model import Policy, PolicyError, SectionKind
from pybpfguard.agent.policy.parse import parse_policy
from pybpfguard.agent.statefiles import replace_file

STDIN = "-"
STDIN_NAME = "<stdin>"
FIXED_MODE = 0o644  # a policy is configuration, not a secret


def _source(args: argparse.Namespace) -> str:
    return STDIN_NAME if args.file == STDIN else args.file


def _load(args: argparse.Namespace) -> Policy | None:
    """The parsed policy, or None after printing why there is none (unreadable file, or its first error)."""
    source = _source(args)
    try:
        if args.file == STDIN:
            data = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as f:
                data = f.read()
    except OSError as err:
        print(f"{args.prog} policy {args.action}: {source}: {err.strerror or err}", file=sys.stderr)
        return None
    try:
        return parse_policy(data, source)
    except PolicyError as err:
        print(err, file=sys.stderr)
        return None


def _print_advisory(source: str, advisory: Advisory, stream: TextIO) -> None:
    where = f"line {advisory.line}: " if advisory.line else ""
    print(f"{source}: {where}{'notice' if advisory.notice else 'warning'}: {advisory.message}", file=stream)


def lint(args: argparse.Namespace) -> int:
    """Exit 0 (advisories alone are not errors), 1 on an error or a failed write, 2 on a bad combination of
    options. ``--fix`` writes the canonical form to ``FILE.fixed``, or to ``--out P`` (``-``: stdout);
    a file is replaced atomically."""
    if args.out is not None and not args.fix:
        print(f"{args.prog} policy lint: --out needs --fix", file=sys.stderr)
        return 2
    if args.out == "":
        print(f"{args.prog} policy lint: --out needs a file name (or - for stdout)", file=sys.stderr)
        return 2
    if args.fix and args.file == STDIN and args.out is None:
        print(f"{args.prog} policy lint: --fix on stdin needs --out (a file, or - for stdout)", file=sys.stderr)
        return 2
    policy = _load(args)
    if policy is None:
        return 1
    source = _source(args)
    to_stdout = args.fix and args.out == STDIN
    report = sys.stderr if to_stdout else sys.stdout
    for advisory in advisories(policy):
        _print_advisory(source, advisory, report)
    if not args.fix:
        return 0
    data = canonical_text(policy)
    if to_stdout:
        sys.stdout.buffer.write(data)
        return 0
    target = args.out if args.out is not None else f"{args.file}.fixed"
    try:
        replace_file(Path(target), data, FIXED_MODE)
    except OSError as err:
        print(f"{args.prog} policy lint: {target}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"{source}: canonical form written to {target}", file=report)
    return 0


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def validate(args: argparse.Namespace) -> int:
    """Print a per-section summary (with ``-v`` every entry, in canonical spelling, with its line) and a
    notice per section this release does not enforce. Reads nothing but the file. Exit 0, or 1."""
    policy = _load(args)
    if policy is None:
        return 1
    source = _source(args)
    header = f"version {policy.version}" + ("" if policy.version_line else " (no version header)")
    count = sum(len(entries) for entries in policy.sections.values())
    sections = _count(len(policy.section_lines), "section", "sections")
    print(f"{source}: {header}, {sections}, {_count(count, 'entry', 'entries')}")
    for section in SECTION_ORDER:
        if section not in policy.section_lines:
            continue
        name = f"[{section.value}]"
        if section.kind is SectionKind.FLAG:
            print(f"  {name:<24} flag")
            continue
        entries = policy.entries(section)
        print(f"  {name:<24} {_count(len(entries), 'entry', 'entries')}")
        if args.verbose:
            for entry in entries:
                print(f"    line {entry.line}: {entry_text(section, entry.value)}")
    if policy.duplicates:
        print(f"  {_count(len(policy.duplicates), 'duplicate entry', 'duplicate entries')} dropped")
    for advisory in advisories(policy, host=False):
        if advisory.notice:
            _print_advisory(source, advisory, sys.stdout)
    return 0


def canonical(args: argparse.Namespace) -> int:
    """Debug: print the canonical form (the text ``lint --fix`` writes). Exit 0, or 1."""
    policy = _load(args)
    if policy is None:
        return 1
    sys.stdout.buffer.write(canonical_text(policy))
    return 0
