"""The BPF LSM tier: every test in this folder runs inside one QEMU guest with a stock kernel.

On the host (which refuses LSM programs) each collected test is replaced by one item per kernel tier
(``test_x[6.1]``, ``test_x[6.12]``) that reports the verdict of that tier's guest for the test; the
first item of a tier boots its guest once and runs all of that tier's items there
(tests/vm/pytest_items.py). Inside the guest (``PYBPFGUARD_IN_VM=1``) the tests run as ordinary tests
with the shared fixtures of tests/conftest.py. See tests/vm/README.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

IN_VM = os.environ.get("PYBPFGUARD_IN_VM") == "1"
LSM_DIR = Path(__file__).resolve().parent


def pytest_itemcollected(item: pytest.Item) -> None:
    # The "vm" marker (pyproject.toml) on every test here, before -m selects: -m "not vm" skips the tier.
    if item.path.is_relative_to(LSM_DIR):
        item.add_marker(pytest.mark.vm)


if not IN_VM:
    # tests/ is importable as a root for the vm package under pytest's default import mode already;
    # this keeps it so under --import-mode=importlib.
    _tests_dir = str(LSM_DIR.parent)
    if _tests_dir not in sys.path:
        sys.path.insert(0, _tests_dir)
    from vm.pytest_items import GuestTestItem, replace_with_guest_items, summary_lines

    # Before -k/-m deselection, so they select per kernel tier too ("-k 6.12"); each guest runs exactly
    # the items of its tier that remain selected.
    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
        replace_with_guest_items(items, under=LSM_DIR)

    def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
        for line in summary_lines(config):
            terminalreporter.write_line(line)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item: pytest.Item, call):  # type: ignore[no-untyped-def]
        outcome = yield
        report = outcome.get_result()
        if not isinstance(item, GuestTestItem):
            return
        if call.when == "call" and item.guest_duration_s is not None:
            report.duration = item.guest_duration_s  # --durations shows the test's time, not the boot's
        if report.skipped and isinstance(report.longrepr, tuple):
            # Point a guest skip at the test, not at the host item's pytest.skip() call.
            path, lineno, _ = item.location
            report.longrepr = (path, (lineno or 0) + 1, report.longrepr[2])
