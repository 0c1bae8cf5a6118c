"""``health [--json] [--require-enforce]`` (docs/cli.md): exit 1 when unhealthy."""

from __future__ import annotations

import argparse
import json

from pybpfguard.agent.health import check
from pybpfguard.agent.logs import Logger, Tracer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--require-enforce", action="store_true", help="also fail when not enforce-capable")


def run(args: argparse.Namespace) -> int:
    tracer = getattr(args, "tracer", None) or Tracer(Logger(args.log_level, args.log_format), enabled=False)
    report = check(tracer)
    if args.json:
        print(json.dumps(report.as_json(), separators=(",", ":")))
    else:
        print(f"ok: {str(report.ok).lower()}")
        print(f"daemon: {'running' if report.daemon_running else 'not running'}")
        print(f"capability: {report.capability}")
        for name, mechanism in report.mechanisms.items():
            print(f"mechanism {name}: {mechanism.value}")
        print(f"runtime_state: {report.runtime_state}")
        print(f"enforce_capable: {str(report.enforce_capable).lower()}")
        for name, present in report.features.items():
            print(f"feature {name}: {'yes' if present else 'no'}")
        for name, state in report.hooks.items():
            print(f"hook {name}: {state}")
        print(f"pins_present: {str(report.pins_present).lower()}")
        print(f"unenforced_rules: {report.unenforced_rules}")
        for issue in report.issues:
            print(f"issue: {issue}")
    healthy = report.ok and (report.enforce_capable or not args.require_enforce)
    return 0 if healthy else 1
