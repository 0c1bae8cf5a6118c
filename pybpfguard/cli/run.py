"""``run``: the daemon (REFERENCE §2.1). Audit mode unless ``--enforce``; it never denies in audit."""

from __future__ import annotations

import argparse
import sys

from pybpfguard.agent.events.sinks import LogOptionError, parse_log
from pybpfguard.agent.options import RunOptions, UsageError, parse_signal, round_ringbuf


def add_arguments(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--audit", dest="mode", action="store_const", const="audit")
    mode.add_argument("--enforce", dest="mode", action="store_const", const="enforce")
    mode.add_argument("--mode", dest="mode", choices=("audit", "enforce"))
    p.set_defaults(mode="audit")
    p.add_argument("--enforce-signal", default="term")
    p.add_argument("--allow-sigkill", action="store_true")
    p.add_argument("--kill-escalation-threshold", type=int, default=5)
    p.add_argument("--kill-escalation-window-seconds", type=int, default=30)
    p.add_argument("--enforce-gate-mode", default="fail-closed")
    p.add_argument("--enforce-fallback", default="off")
    p.add_argument("--strict-degrade", action="store_true")
    p.add_argument("--lsm-hook", default="file")
    p.add_argument("--ringbuf-bytes", type=int, default=16 << 20)
    p.add_argument("--event-sample-rate", type=int, default=1)
    p.add_argument("--log", default="stdout")
    p.add_argument("--max-deny-inodes", type=int, default=65536)
    p.add_argument("--max-deny-paths", type=int, default=16384)
    p.add_argument("--allow-unsigned-bpf", action="store_true", help="accepted and ignored")


def options_from_args(args: argparse.Namespace) -> RunOptions:
    return RunOptions(
        enforce=args.mode == "enforce",
        enforce_signal=parse_signal(args.enforce_signal),
        allow_sigkill=args.allow_sigkill,
        kill_escalation_threshold=args.kill_escalation_threshold,
        kill_escalation_window_s=args.kill_escalation_window_seconds,
        enforce_gate_mode=args.enforce_gate_mode,
        enforce_fallback=args.enforce_fallback,
        strict_degrade=args.strict_degrade,
        lsm_hook=args.lsm_hook,
        ringbuf_bytes=round_ringbuf(args.ringbuf_bytes),
        event_sample_rate=args.event_sample_rate,
        log=parse_log(args.log),
        max_deny_inodes=args.max_deny_inodes,
        max_deny_paths=args.max_deny_paths,
    )


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except (UsageError, LogOptionError) as err:
        print(f"{args.prog} run: {err}", file=sys.stderr)
        return 2
    from pybpfguard.agent.logs import Logger

    logger = Logger(args.log_level, args.log_format)
    if options.ringbuf_bytes != args.ringbuf_bytes:
        logger.warn("--ringbuf-bytes rounded up to a power of two of at least 4096", requested=args.ringbuf_bytes,
                    used=options.ringbuf_bytes)
    if args.allow_unsigned_bpf:
        logger.warn("--allow-unsigned-bpf is accepted and ignored: pybpfguard generates its programs and has no "
                    "object file to verify")
    from pybpfguard.agent.daemon import run_daemon

    return run_daemon(options, log_level=args.log_level, log_format=args.log_format, prog=args.prog)
