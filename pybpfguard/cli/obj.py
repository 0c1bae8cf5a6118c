"""``obj show OBJ`` and ``obj load OBJ [--pin DIR] [--attach] [--set NAME=VALUE]``: clang-built BPF objects,
as ``bpftool prog loadall`` serves libbpf users (pybpfguard.bpf.elf).

``show`` lists programs (section, type, attach target, instruction count) and maps (type, key/value
sizes, max_entries, pinning). ``load`` loads every program and map, pins them under DIR
(``DIR/<program>``, ``DIR/maps/<map>``) and with ``--attach`` attaches each program by its section and
waits until interrupted (exit 130). Exit 1 with one line on stderr when the object or the kernel refuses.
"""

from __future__ import annotations

import argparse
import signal
import sys

from pybpfguard.bpf.elf import Collection
from pybpfguard.bpf.elf.object import Pinning
from pybpfguard.bpf.errors import BPFError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="list the programs and maps of a BPF object file")
    show.add_argument("object", help="the ELF object (clang -target bpf -g -O2 -c)")
    load = sub.add_parser("load", help="load (and pin, attach) every program and map of a BPF object file")
    load.add_argument("object", help="the ELF object (clang -target bpf -g -O2 -c)")
    load.add_argument("--pin", metavar="DIR", help="pin programs at DIR/<name> and maps at DIR/maps/<name> "
                      "(a directory on a bpffs; default: pin nothing)")
    load.add_argument("--attach", action="store_true", help="attach each program by its section, then wait "
                      "until interrupted")
    load.add_argument("--cgroup", metavar="PATH", help="the cgroup v2 directory cgroup programs attach to "
                      "(default: none; needed by --attach for cgroup sections)")
    load.add_argument("--pin-root", metavar="DIR", help="where maps pinned by name live (default: /sys/fs/bpf)")
    load.add_argument("--set", metavar="NAME=VALUE", action="append", dest="constants",
                      help="set the .rodata constant NAME to the integer VALUE (0x.. for hex) before load; "
                      "repeatable (default: none)")


def _constants(pairs: list[str] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for pair in pairs or []:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise ValueError(f"--set {pair!r}: want NAME=VALUE")
        try:
            out[name] = int(value, 0)
        except ValueError:
            raise ValueError(f"--set {pair!r}: {value!r} is not an integer") from None
    return out


def _show(coll: Collection) -> None:
    print("programs:")
    for view in coll.program_views():
        attach = view.attach_type.name if view.attach_type is not None else "-"
        print(f"  {view.name}: section {view.section}, type {view.prog_type.name}, attach {attach}"
              f"{f' target {view.target}' if view.target else ''}, {view.insn_count} insns")
    print("maps:")
    for mdef in coll.map_defs.values():
        spec = mdef.spec
        pin = "by name" if mdef.pinning == Pinning.BY_NAME else "none"
        print(f"  {mdef.name}: type {spec.type.name}, key {spec.key_size} B, value {spec.value_size} B, "
              f"max_entries {spec.max_entries}, pinning {pin}")


def _load(coll: Collection, args: argparse.Namespace) -> int:
    for name, value in _constants(args.constants).items():
        coll.set_constant(name, value)
    coll.load(pin_root=args.pin_root)
    if args.pin:
        coll.pin(args.pin)
    for name, prog in coll.programs.items():
        print(f"loaded {name} (id {prog.info().id})")
    if args.attach:
        links = coll.attach(cgroup=args.cgroup)
        print(f"attached {', '.join(links) or 'nothing'}; waiting (Ctrl-C ends)", flush=True)
        while True:
            signal.pause()
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        with Collection.open(args.object) as coll:
            if args.action == "show":
                _show(coll)
                return 0
            return _load(coll, args)
    except BrokenPipeError:
        raise  # the reader went away: the entry point ends quietly
    except (BPFError, ValueError) as err:  # SyscallError is an OSError too: it names its command
        print(f"{args.prog} obj {args.action}: {err}", file=sys.stderr)
    except OSError as err:
        print(f"{args.prog} obj {args.action}: {args.object}: {err.strerror or err}", file=sys.stderr)
    return 1
