"""``version``: print ``<name> <version>`` (docs/cli.md)."""

import argparse

from pybpfguard import __version__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    print(f"{args.prog} {__version__}")
    return 0
