"""Command-line entry point shared by ``pybpfguard``, ``aegisbpf`` and ``python -m pybpfguard``.

Each command lives in its own module under ``pybpfguard.cli`` and exposes
``add_arguments(parser)`` and ``run(args) -> int`` (the exit code, docs/cli.md). Modules are
imported only when their command is parsed, so start-up pays for the command that runs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import sys
from collections.abc import Sequence

from pybpfguard import __version__

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("pybpfguard.cli.run", "run the agent (audit mode unless --enforce)"),
    "block": ("pybpfguard.cli.block", "deny files by inode: add, del, list, clear"),
    "allow": ("pybpfguard.cli.allow", "exempt cgroups: add, del, list"),
    "policy": ("pybpfguard.cli.policy", "policies: lint, validate, apply, show, export, rollback, sign"),
    "keys": ("pybpfguard.cli.keys", "trusted policy-signing keys: list, add"),
    "bpf": ("pybpfguard.cli.bpf", "signing keys: keygen (sign is not applicable)"),
    "simulate": ("pybpfguard.cli.simulate", "replay events against a candidate policy"),
    "explain": ("pybpfguard.cli.explain", "explain an event against the applied policy or a file"),
    "stats": ("pybpfguard.cli.stats", "block and drop counters"),
    "health": ("pybpfguard.cli.health", "check prerequisites and posture"),
    "probe": ("pybpfguard.cli.probe", "probe kernel BPF features"),
    "asm": ("pybpfguard.cli.asm", "assemble LLVM BPF assembly text into raw instructions"),
    "disasm": ("pybpfguard.cli.disasm", "disassemble raw instructions into LLVM BPF assembly text"),
    "obj": ("pybpfguard.cli.obj", "show or load a clang-built BPF object file (programs, maps)"),
    "bytecode": ("pybpfguard.cli.bytecode", "write or check the program listings in bytecode/"),
    "version": ("pybpfguard.cli.version", "print the version"),
}

_GLOBAL_VALUED = {"--log-level", "--log-format"}
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130, as a shell reports a command ended by Ctrl-C
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("text", "json")
GLOBAL_HELP = """global options (accepted anywhere in the command line):
  --log-level {debug,info,warn,error}  least severe log record written to stderr (default: info)
  --log-format {text,json}             log records as text or one JSON object per line (default: text)"""
EPILOG = """exit codes: 0 success; 1 the operation failed; 2 usage error; 3 enforcement requested but refused
(run); 4 a rule edit is stored but no running daemon confirmed it (block, allow)"""


def _split_globals(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Pull ``--log-level``/``--log-format`` out of argv wherever they stand (docs/cli.md)."""
    found: dict[str, str] = {}
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name in _GLOBAL_VALUED:
            if not eq:
                value = next(it, "")
            found[name[2:].replace("-", "_")] = value
        else:
            rest.append(arg)
    return found, rest


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def build_parser(prog: str, only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with *only* (a command name) just that command's module is imported, which is what
    keeps ``run`` from paying for every other command's imports at start-up."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("global options (accepted anywhere in the command line)")
    group.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                       help="least severe log record written to stderr (default: %(default)s)")
    group.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                       help="log records as text or one JSON object per line (default: %(default)s)")
    # The top level shows the global options in its epilog rather than as options: parsing them there would
    # make argparse take a command's own --log for an abbreviation of --log-level.
    parser = argparse.ArgumentParser(prog=prog, description="pybpfguard runtime security agent",
                                     epilog=f"{GLOBAL_HELP}\n\n{EPILOG}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-V", "--version", action="version", version=f"{prog} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if (only is not None and name != only) or not _available(module):
            continue
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common], epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def span_name(args: argparse.Namespace) -> str:
    """The root span of a CLI invocation: ``cli.<command>`` or ``cli.<command>_<action>`` (``cli.block_add``,
    ``cli.policy_apply``), dashes as underscores."""
    action = getattr(args, "action", None)
    return "cli." + "_".join(p.replace("-", "_") for p in (args.command, action) if p)


def _run_command(args: argparse.Namespace) -> int:
    """Run the parsed command inside its root span (span logs on: ``PYBPFGUARD_OTEL_SPANS``); the daemon's
    trace is its own (``daemon.run``). ``args.tracer`` is the invocation's tracer, for child spans."""
    module = importlib.import_module(args._module)
    from pybpfguard.agent.config import env_flag

    if args.command == "run" or not env_flag("OTEL_SPANS"):
        args.tracer = None
        return int(module.run(args) or 0)
    from pybpfguard.agent.logs import Logger, Tracer

    args.tracer = Tracer(Logger(args.log_level, args.log_format), enabled=True)
    with args.tracer.span(span_name(args)):
        return int(module.run(args) or 0)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    if prog is None:
        prog = os.path.basename(sys.argv[0]) or "pybpfguard"
        if prog not in ("pybpfguard", "aegisbpf"):
            prog = "pybpfguard"
    for name in ("stdout", "stderr"):  # started with fd 1 or 2 closed: write to nowhere rather than fail
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 -- lives as long as the process
    args_in = list(sys.argv[1:] if argv is None else argv)
    global_opts, rest = _split_globals(args_in)
    if global_opts.get("log_level", "info") not in LOG_LEVELS:
        print(f"{prog}: --log-level must be debug, info, warn or error", file=sys.stderr)
        return 2
    if global_opts.get("log_format", "text") not in LOG_FORMATS:
        print(f"{prog}: --log-format must be text or json", file=sys.stderr)
        return 2
    if not rest:
        rest = ["run"]
    command = rest[0] if rest[0] in COMMANDS else None
    parser = build_parser(prog, only=command)
    args = parser.parse_args(rest)
    args.prog = prog
    args.log_level = global_opts.get("log_level", "info")
    args.log_format = global_opts.get("log_format", "text")
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 2
    try:
        code = _run_command(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly. stdout is pointed at /dev/null so the interpreter's
        # final flush cannot fail again; exit 1 as the output was cut short.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C in a command that has no SIGINT handler of its own (run stops cleanly by itself): end the way
        # shells expect of an interrupted command, quietly with 128 + SIGINT; a rule edit rolls back first.
        return EXIT_INTERRUPTED
    return code
