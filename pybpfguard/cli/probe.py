"""``pybpfguard probe``: ask the running kernel which BPF features it offers, as a table or JSON.

Exit code 0 when every probe decided (available or unsupported), 1 when any was inconclusive.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON array of probe results")


def run(args: argparse.Namespace) -> int:
    from pybpfguard.bpf import features

    results = features.probe_all()
    if args.json:
        rows = [
            {"name": r.name, "status": r.status.value, "min_kernel": r.min_kernel, "reason": r.reason} for r in results
        ]
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        width = max(len(r.name) for r in results)
        sys.stdout.write(f"{'FEATURE':<{width}}  {'STATUS':<12}  {'SINCE':<5}  REASON\n")
        for r in results:
            sys.stdout.write(f"{r.name:<{width}}  {r.status.value:<12}  {r.min_kernel:<5}  {r.reason}\n")
    return 1 if any(r.status is features.Status.INCONCLUSIVE for r in results) else 0
