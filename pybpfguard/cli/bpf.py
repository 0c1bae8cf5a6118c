"""``bpf keygen --out <prefix>``; ``bpf sign`` is not applicable (docs/policy.md, "Signed bundles and keys")."""

from __future__ import annotations

import argparse
import sys

from pybpfguard.agent.policy.keys import keygen

EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("keygen", help="write a new Ed25519 key pair: PREFIX.key (0600) and PREFIX.pub")
    p.add_argument("--out", required=True, metavar="PREFIX", help="where to write PREFIX.key and PREFIX.pub")
    p = sub.add_parser("sign", help="not applicable: pybpfguard generates its programs, there is no object file")
    p.add_argument("args", nargs="*", help="ignored")


def run(args: argparse.Namespace) -> int:
    if args.action == "sign":
        print(f"{args.prog} bpf sign: not applicable: pybpfguard generates its BPF programs at load time, so there "
              "is no object file to sign; program integrity is that of the installed package", file=sys.stderr)
        return EXIT_USAGE
    try:
        key_path, pub_path = keygen(args.out)
    except OSError as err:
        print(f"{args.prog} bpf keygen: {err}", file=sys.stderr)
        return 1
    print(f"wrote {key_path} (private, keep it secret) and {pub_path} (install with: {args.prog} keys add "
          f"{pub_path})")
    return 0
