"""``block add|del <path>``, ``block list``, ``block clear`` (docs/cli.md)."""

from __future__ import annotations

import argparse
import os
import sys

from pybpfguard.agent import config, rules
from pybpfguard.agent.paths import InodeKey
from pybpfguard.agent.statefiles import DenyDb
from pybpfguard.cli._rules import EXIT_OK, EXIT_STORED, edit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("add", help="deny a file by inode").add_argument("path")
    sub.add_parser("del", help="remove the rule for a file").add_argument("path")
    sub.add_parser("list", help="list the denied inodes")
    sub.add_parser("clear", help="remove every file rule and cgroup exemption, reset the counters")


def _confirmed_but_unenforced(prog: str, key: InodeKey, code: int) -> int:
    """A daemon confirmed the edit, but may have found it cannot enforce this very rule (a file it cannot
    mark): then the rule is stored and not enforced, exit 4 with the daemon's reason (No-Pretend)."""
    from pybpfguard.agent.runtime import read_runtime

    running = read_runtime()
    reason = running.unenforced.get(f"{key[1]}:{key[0]}") if running is not None else None
    if reason is None:
        return code
    print(f"{prog} block add: stored, but the running daemon cannot enforce it: {reason} (exit {EXIT_STORED})",
          file=sys.stderr)
    return EXIT_STORED


def run(args: argparse.Namespace) -> int:
    db = DenyDb(config.state_file("deny.db"))
    path = os.fsencode(getattr(args, "path", "") or "")
    if args.action in ("add", "del"):
        edit_fn = rules.block_add if args.action == "add" else rules.block_del
        code, result = edit(args.prog, f"block {args.action}", lambda pins: edit_fn(pins, db, path))
        for warning in result.warnings if result else []:
            print(f"{args.prog} block {args.action}: warning: {warning}", file=sys.stderr)
        if code == EXIT_OK and result is not None and result.denied is not None:
            code = _confirmed_but_unenforced(args.prog, result.denied, code)
        return code
    if args.action == "clear":
        return edit(args.prog, "block clear", lambda pins: rules.block_clear(pins, db, rules.agent_cgids()))[0]
    from pybpfguard.agent.runtime import read_runtime

    running = read_runtime()
    unenforced = running.unenforced if running is not None else {}
    code, lines = edit(args.prog, "block list", lambda pins: rules.block_list(pins, db, unenforced), sync=False)
    for line in lines or []:
        print(line)
    return code
