"""``keys list`` and ``keys add <pub>``: the trust store of bundle signers (docs/policy.md, "Signed bundles and
keys")."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.policy.keys import add_trusted_key, load_trust_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="print each trusted key and its file; refused files go to stderr")
    sub.add_parser("add", help="trust the public key in PUB (bpf keygen's .pub)").add_argument("pub")


def run(args: argparse.Namespace) -> int:
    command = f"{args.prog} keys {args.action}"
    try:
        if args.action == "add":
            path, added = add_trusted_key(Path(args.pub))
            print(f"{'added' if added else 'already trusted'}: {path}")
            return 0
        store = load_trust_store()
    except (AgentError, OSError) as err:
        print(f"{command}: {err}", file=sys.stderr)
        return 1
    for key in store.keys:
        print(f"{key.key.hex()}  {key.path}")
    for path, reason in store.refused:
        print(f"{command}: refused {path}: {reason}", file=sys.stderr)
    if not store.keys and not store.refused:
        print(f"{command}: no trusted keys in {store.directory}", file=sys.stderr)
    return 1 if store.refused else 0
