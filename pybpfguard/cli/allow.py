"""``allow add|del <cgroup-path|cgid:N>``, ``allow list`` (docs/cli.md)."""

from __future__ import annotations

import argparse

from pybpfguard.agent import rules
from pybpfguard.cli._rules import edit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("add", help="exempt a cgroup from every global rule").add_argument("cgroup")
    sub.add_parser("del", help="remove a cgroup exemption").add_argument("cgroup")
    sub.add_parser("list", help="list the exempt cgroup ids")


def run(args: argparse.Namespace) -> int:
    if args.action == "add":
        return edit(args.prog, "allow add", lambda pins: rules.allow_add(pins, args.cgroup))[0]
    if args.action == "del":
        return edit(args.prog, "allow del", lambda pins: rules.allow_del(pins, args.cgroup))[0]
    code, cgids = edit(args.prog, "allow list", rules.allow_list, sync=False)
    for cgid in cgids or []:
        print(f"cgid:{cgid}")
    return code
