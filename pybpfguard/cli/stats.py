"""``stats``: ``blocks_total <n>`` and ``ringbuf_drops_total <n>`` from the pinned per-CPU counters."""

from __future__ import annotations

import argparse
import sys

from pybpfguard.agent import config
from pybpfguard.agent.maps import PinLayoutMismatch, PinnedMaps
from pybpfguard.agent.trust import UntrustedPathError
from pybpfguard.bpf.errors import BPFError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detailed", action="store_true", help="accepted; per-rule counters are not kept yet")


def block_counters(pins: PinnedMaps) -> tuple[int, int]:
    """(blocks, ringbuf drops), summed over the possible CPUs."""
    per_cpu = pins.block_stats.lookup_elem(0)
    return sum(v.blocks for v in per_cpu), sum(v.ringbuf_drops for v in per_cpu)


def run(args: argparse.Namespace) -> int:
    try:
        with PinnedMaps.open(config.pin_root(), create=False) as pins:
            blocks, drops = block_counters(pins)
    except FileNotFoundError:
        blocks = drops = 0  # nothing pinned yet: nothing has been counted
    except (OSError, BPFError, UntrustedPathError, PinLayoutMismatch) as err:
        print(f"{args.prog} stats: {err}", file=sys.stderr)
        return 1
    print(f"blocks_total {blocks}")
    print(f"ringbuf_drops_total {drops}")
    return 0
