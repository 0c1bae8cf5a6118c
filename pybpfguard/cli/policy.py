"""``policy lint|validate|apply|show|export|rollback|sign`` and the debug dumps (docs/policy.md).

Each action's code lives in the module named in :data:`ACTIONS`, imported only when that action runs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

#: action -> (module, function, one-line help)
ACTIONS: dict[str, tuple[str, str, str]] = {
    "lint": ("pybpfguard.cli.policy_check", "lint", "report errors and advisories; --fix writes the canonical form"),
    "validate": ("pybpfguard.cli.policy_check", "validate", "parse and print a per-section summary"),
    "apply": ("pybpfguard.cli.policy_apply", "apply", "apply a policy file or signed bundle atomically"),
    "show": ("pybpfguard.cli.policy_apply", "show", "print the applied policy"),
    "export": ("pybpfguard.cli.policy_apply", "export", "write a policy from the live rules"),
    "rollback": ("pybpfguard.cli.policy_apply", "rollback", "re-apply the previous policy"),
    "sign": ("pybpfguard.cli.policy_sign", "sign", "write a signed bundle of a policy"),
    "canonical": ("pybpfguard.cli.policy_check", "canonical", "debug: print the canonical policy"),
    "bundle-canonical": ("pybpfguard.cli.policy_sign", "bundle_canonical",
                         "debug: print a bundle's fields and its signed message"),
    "event-canonical": ("pybpfguard.cli.explain", "event_canonical", "debug: print a decoded event"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("lint", help=ACTIONS["lint"][2])
    p.add_argument("file")
    p.add_argument("--fix", action="store_true", help="write the canonical form (to FILE.fixed unless --out)")
    p.add_argument("--out", metavar="P", help="with --fix: write the canonical form to P")
    p = sub.add_parser("validate", help=ACTIONS["validate"][2])
    p.add_argument("file")
    p.add_argument("-v", "--verbose", action="store_true", help="list every entry")
    p = sub.add_parser("apply", help=ACTIONS["apply"][2])
    p.add_argument("file")
    p.add_argument("--reset", action="store_true", help="replace every rule, instead of adding to the current ones")
    p.add_argument("--sha256", metavar="HEX", help="refuse unless the file's SHA-256 is HEX")
    p.add_argument("--sha256-file", metavar="P", help="refuse unless the file's SHA-256 is the one in P")
    p.add_argument("--no-rollback", action="store_true", help="keep the new rules when a step after the switch fails")
    p.add_argument("--require-signature", action="store_true", help="refuse anything but a signed bundle")
    p.add_argument("--dry-run", action="store_true", help="resolve and check, print the summary, change nothing")
    p.add_argument("--canary", type=float, default=0.0, metavar="SECONDS",
                   help="watch the deny rate for SECONDS after the switch; switch back above the threshold")
    p.add_argument("--canary-threshold", type=float, default=10.0, metavar="N",
                   help="denies per second above which the canary switches back (default: %(default)s)")
    sub.add_parser("show", help=ACTIONS["show"][2])
    sub.add_parser("export", help=ACTIONS["export"][2]).add_argument("file")
    sub.add_parser("rollback", help=ACTIONS["rollback"][2])
    p = sub.add_parser("sign", help=ACTIONS["sign"][2])
    p.add_argument("file")
    p.add_argument("--key", required=True, metavar="PRIV", help="private key file (bpf keygen)")
    p.add_argument("--output", required=True, metavar="OUT", help="bundle file to write")
    p.add_argument("--format", choices=("v1", "v2"), default="v2",
                   help="v2 (pybpfguard) or v1 (AegisBPF hosts) (default: %(default)s)")
    for name in ("canonical", "bundle-canonical", "event-canonical"):
        sub.add_parser(name, help=ACTIONS[name][2]).add_argument("file")


def run(args: argparse.Namespace) -> int:
    module, function, _ = ACTIONS[args.action]
    if importlib.util.find_spec(module) is None:
        print(f"{args.prog} policy {args.action}: not available in this build", file=sys.stderr)
        return 1
    return int(getattr(importlib.import_module(module), function)(args) or 0)
