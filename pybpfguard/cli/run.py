"""``run``: the daemon (docs/cli.md). Audit mode unless ``--enforce``; it never denies in audit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pybpfguard.agent.events.sinks import LogOptionError, parse_log
from pybpfguard.agent.options import (
    EnforceFallback,
    GateMode,
    LsmHook,
    RunOptions,
    UsageError,
    parse_signal,
    round_ringbuf,
)


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a decimal integer from *low* to *high*; anything else is a usage error (exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range ({low} to {high})")
        return value

    parse.__name__ = "number"  # argparse names the type in its messages
    return parse


U32_MAX = (1 << 32) - 1
# A hash map's max_entries is a u32; the kernel refuses sizes it cannot allocate, at load time.
_MAP_ENTRIES = bounded_int(1, 1 << 24)


def add_arguments(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--audit", dest="mode", action="store_const", const="audit",
                      help="observe and report only, never deny (the default)")
    mode.add_argument("--enforce", dest="mode", action="store_const", const="enforce",
                      help="deny what the rules say (EPERM) and report it")
    mode.add_argument("--mode", dest="mode", choices=("audit", "enforce"),
                      help="the same as --audit or --enforce (default: audit)")
    p.set_defaults(mode="audit")
    p.add_argument("--enforce-signal", default="term", metavar="{none,term,kill,int}",
                   help="signal sent to a denied task with EPERM; also block (=none), sigterm, sigkill, sigint "
                        "and 0, 15, 9, 2 (default: %(default)s)")
    p.add_argument("--allow-sigkill", action="store_true",
                   help="acknowledge --enforce-signal=kill (refused without it) (default: off)")
    p.add_argument("--kill-escalation-threshold", type=bounded_int(1, U32_MAX), default=5, metavar="N",
                   help="with kill: denials of one process within the window before TERM becomes KILL "
                        "(default: %(default)s)")
    p.add_argument("--kill-escalation-window-seconds", type=bounded_int(1, U32_MAX), default=30, metavar="S",
                   help="the escalation window in seconds (default: %(default)s)")
    p.add_argument("--enforce-gate-mode", default="fail-closed", choices=("fail-closed", "audit-fallback"),
                   help="when enforcement is requested but nothing can enforce: exit 3, or run in audit "
                        "(default: %(default)s)")
    p.add_argument("--enforce-fallback", default="off", choices=("signal", "off"),
                   help="without BPF LSM or fanotify, kill denied executables at exec (default: %(default)s)")
    p.add_argument("--strict-degrade", action="store_true",
                   help="exit 3 on reaching AUDIT_FALLBACK or DEGRADED (default: off)")
    p.add_argument("--lsm-hook", default="file", choices=("file", "inode", "both"),
                   help="LSM hooks for file rules: file_open, inode_permission or both (default: %(default)s)")
    p.add_argument("--ringbuf-bytes", type=bounded_int(1, 1 << 31), default=16 << 20, metavar="N",
                   help="size of the events ring, rounded up to a power of two >= 4096 (default: %(default)s)")
    p.add_argument("--event-sample-rate", type=bounded_int(1, U32_MAX), default=1, metavar="N",
                   help="emit 1 of N events; counters still count every match (default: %(default)s)")
    p.add_argument("--log", default="stdout", metavar="{stdout,journald,both}",
                   help="event sinks, a comma list allowed; both = stdout and journald (default: %(default)s)")
    p.add_argument("--max-deny-inodes", type=_MAP_ENTRIES, default=65536, metavar="N",
                   help="entries of the deny_inode map; a pinned map of another size is kept "
                        "(default: %(default)s)")
    p.add_argument("--max-deny-paths", type=_MAP_ENTRIES, default=16384, metavar="N",
                   help="entries of the deny_path map (default: %(default)s)")
    p.add_argument("--allow-unsigned-bpf", action="store_true",
                   help="accepted and ignored: pybpfguard generates its programs (default: off)")


def options_from_args(args: argparse.Namespace) -> RunOptions:
    return RunOptions(
        enforce=args.mode == "enforce",
        enforce_signal=parse_signal(args.enforce_signal),
        allow_sigkill=args.allow_sigkill,
        kill_escalation_threshold=args.kill_escalation_threshold,
        kill_escalation_window_s=args.kill_escalation_window_seconds,
        enforce_gate_mode=GateMode(args.enforce_gate_mode),
        enforce_fallback=EnforceFallback(args.enforce_fallback),
        strict_degrade=args.strict_degrade,
        lsm_hook=LsmHook(args.lsm_hook),
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
