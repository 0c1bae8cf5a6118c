"""``python -m pybpfguard``: the command line (see ``pybpfguard.cli``)."""

import sys

from pybpfguard.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="pybpfguard"))
