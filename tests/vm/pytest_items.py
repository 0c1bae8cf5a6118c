"""Host-side pytest items that report, per kernel tier, what a test did inside that tier's guest.

``replace_with_guest_items(items, under=dir)`` swaps every collected test below *dir* for one GuestTestItem
per kernel tier (tests/vm/kernels.py), named like a parameter: ``test_x[6.1]``, ``test_x[6.12]``
(``test_y[a-6.12]`` for a test already parametrized ``[a]``). The first item to run boots every tier's
guest once, side by side (up to ``PYBPFGUARD_VM_JOBS``, default the CPU count), each for every selected
item of its tier (``run_guest_pytest``); each item then passes, fails (with the guest's failure text),
skips or xfails as its guest twin did. If a guest could not run, every item of its tier fails with the
reason and the console tail. The only exception: an optional tier whose
kernel is not installed skips, and under PYBPFGUARD_REQUIRE_KERNEL=1 fails too.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from .guest_pytest import GuestRun, Outcome, run_guest_pytest
from .harness import VMKernelMissingError, kernel_for
from .kernels import TIERS, GuestKernel, tier_named

_RUNS = pytest.StashKey[dict[str, "_BackgroundRun"]]()


class GuestFailure(Exception):
    """The guest's failure text for one test, shown as is instead of a host traceback."""


def tier_item_name(name: str, tier: str) -> str:
    """*name* with the kernel tier as its last parameter id: ``t`` -> ``t[6.1]``, ``t[a]`` -> ``t[a-6.1]``."""
    return f"{name[:-1]}-{tier}]" if name.endswith("]") else f"{name}[{tier}]"


class GuestTestItem(pytest.Item):
    """Stands for the run, in the guest of kernel tier ``tier``, of the test with node id ``guest_nodeid``;
    keeps its markers and location."""

    def __init__(self, *, origin: pytest.Item, tier: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        path, lineno, domain = origin.reportinfo()
        self._reportinfo = (path, lineno, tier_item_name(domain, tier))  # failure headers name the tier
        self.guest_nodeid = origin.nodeid
        self.tier = tier
        self.own_markers.extend(origin.own_markers)
        self.keywords.update(origin.keywords)
        # Hooks written for pytest.Function read fixturenames; the host side needs no fixtures.
        self.fixturenames: list[str] = []
        # The guest's own timing of this test (seconds); the host's includes the shared boot.
        self.guest_duration_s: float | None = None

    def runtest(self) -> None:
        run = guest_run(self)
        if isinstance(run.error, VMKernelMissingError) and tier_named(self.tier).optional:
            if os.environ.get("PYBPFGUARD_REQUIRE_KERNEL") != "1":
                pytest.skip(f"kernel tier {self.tier} not installed: {run.error.reason}")
            raise GuestFailure(
                f"kernel tier {self.tier} is required (PYBPFGUARD_REQUIRE_KERNEL=1) and missing: {run.error.reason}"
            )
        if run.error is not None:
            raise GuestFailure(f"VM tier ({self.tier}) could not run the guest: {run.error}")
        verdict = run.verdict(self.guest_nodeid)
        if verdict is not None:
            self.guest_duration_s = verdict.duration_s
        if verdict is None:
            rc = run.vm.returncode if run.vm is not None else "?"
            raise GuestFailure(
                f"the {self.tier} guest reported no verdict for {self.guest_nodeid} (guest pytest exited {rc})\n"
                f"--- guest output tail ---\n{run.output_tail()}"
            )
        if verdict.outcome is Outcome.SKIPPED:
            pytest.skip(f"in the {self.tier} guest: {verdict.message}")
        if verdict.outcome is Outcome.XFAILED:
            pytest.xfail(f"in the {self.tier} guest: {verdict.message}")
        if verdict.outcome in (Outcome.FAILED, Outcome.ERROR):
            where = "setup/teardown error" if verdict.outcome is Outcome.ERROR else "failed"
            raise GuestFailure(f"{where} in the {self.tier} guest: {verdict.message}\n{verdict.text}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, GuestFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self._reportinfo


def replace_with_guest_items(items: list[pytest.Item], under: Path) -> None:
    """Replace, in place, each item whose file is below *under* with one GuestTestItem per kernel tier.

    The items are grouped by tier (every 6.1 item, then every 6.12 item), so each guest's results are
    reported together.
    """
    kept: list[pytest.Item] = []
    per_tier: dict[str, list[pytest.Item]] = {t.series: [] for t in TIERS}
    for item in items:
        if not item.path.is_relative_to(under) or isinstance(item, GuestTestItem):
            kept.append(item)
            continue
        for series, tier_items in per_tier.items():
            name = tier_item_name(item.name, series)
            tier_items.append(GuestTestItem.from_parent(item.parent, name=name, origin=item, tier=series))
    items[:] = kept + [item for tier_items in per_tier.values() for item in tier_items]


def tier_kernel_or_skip(series: str) -> GuestKernel:
    """The kernel of tier *series* for a host test; skips if that tier is optional and not installed
    (a failure under PYBPFGUARD_REQUIRE_KERNEL=1, by tests/conftest.py), raises VMKernelMissingError else."""
    try:
        return kernel_for(series)
    except VMKernelMissingError as err:
        if tier_named(series).optional:
            pytest.skip(err.reason)
        raise


def guest_jobs() -> int:
    """How many guests may boot at once: ``PYBPFGUARD_VM_JOBS``, default the CPU count (each TCG guest
    keeps one CPU busy, so more would only make every guest slower). At least 1."""
    value = os.environ.get("PYBPFGUARD_VM_JOBS", "")
    return max(1, int(value) if value.isdigit() else os.cpu_count() or 1)


class _BackgroundRun:
    """One tier's guest run in a daemon thread; ``result()`` waits for it and re-raises what it raised.

    Daemon, so an interrupted session exits without waiting for the guest: qemu then dies with this
    process (run_in_vm starts it with a parent-death signal).
    """

    def __init__(self, nodeids: list[str], rootdir: Path, tier: str, slots: threading.Semaphore) -> None:
        self._run: GuestRun | None = None
        self._error: BaseException | None = None
        # Set when _main ends: an interrupted Thread.join() can leave is_alive() wrong, an Event cannot.
        self._finished = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(nodeids, rootdir, tier, slots), name=f"vm-guest-{tier}", daemon=True
        )
        self._thread.start()

    def _main(self, nodeids: list[str], rootdir: Path, tier: str, slots: threading.Semaphore) -> None:
        try:
            with slots:
                self._run = run_guest_pytest(nodeids, rootdir, tier=tier)
        except BaseException as err:  # handed to the waiting test, which reports it
            self._error = err
        finally:
            self._finished.set()

    def done(self) -> bool:
        return self._finished.is_set()

    def result(self) -> GuestRun:
        while not self._finished.wait(0.5):  # short waits, so Ctrl-C is handled while the guest runs
            pass
        if self._error is not None:
            raise self._error
        assert self._run is not None
        return self._run


def guest_run(item: GuestTestItem) -> GuestRun:
    """The session's one guest run for *item*'s tier.

    The first item to ask starts every tier's guest that has selected items (so -k/-m and node ids
    select per tier too), up to guest_jobs() at once, and waits for its own tier's.
    """
    runs = item.config.stash.get(_RUNS, None)
    if runs is None:
        slots = threading.Semaphore(guest_jobs())
        by_tier: dict[str, list[str]] = {}
        for i in item.session.items:
            if isinstance(i, GuestTestItem):
                by_tier.setdefault(i.tier, []).append(i.guest_nodeid)
        rootdir = item.config.rootpath
        runs = {tier: _BackgroundRun(nodeids, rootdir, tier, slots) for tier, nodeids in by_tier.items()}
        item.config.stash[_RUNS] = runs
    return runs[item.tier].result()


def summary_lines(config: pytest.Config) -> list[str]:
    """One line per kernel tier whose guest ran (or failed to) this session, for the terminal summary."""
    lines = []
    for tier, background in config.stash.get(_RUNS, {}).items():
        if not background.done():  # an interrupted session: do not wait for the guest
            lines.append(f"VM tier {tier}: guest still running, abandoned")
            continue
        try:
            run = background.result()
        except BaseException as err:
            lines.append(f"VM tier {tier}: guest run raised {err!r}")
            continue
        if run.vm is None:
            lines.append(f"VM tier {tier}: guest did not run: {run.error.reason if run.error else '?'}")
        else:
            lines.append(
                f"VM tier {tier}: {len(run.verdicts)} tests in one guest ({run.vm.kernel_release}), guest pytest "
                f"exited {run.vm.returncode} after {run.vm.duration_s:.1f} s (boot included)"
            )
    return lines
