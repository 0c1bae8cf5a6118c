"""Host-side pytest items that report, under the same node id, what a test did inside the guest.

``replace_with_guest_items(config, items, under=dir)`` swaps every collected test below *dir* for a
GuestTestItem. The first one to run boots the guest once for all of them (``run_guest_pytest``); each
then passes, fails (with the guest's failure text), skips or xfails as its guest twin did. If the guest
could not run at all, every one fails with the reason and the console tail; none skips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .guest_pytest import GuestRun, Outcome, run_guest_pytest

_NODEIDS = pytest.StashKey[list[str]]()
_RUN = pytest.StashKey[GuestRun]()


class GuestFailure(Exception):
    """The guest's failure text for one test, shown as is instead of a host traceback."""


class GuestTestItem(pytest.Item):
    """Stands for the guest run of the test with the same node id; keeps its markers and location."""

    def __init__(self, *, origin: pytest.Item, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reportinfo = origin.reportinfo()
        self.own_markers.extend(origin.own_markers)
        self.keywords.update(origin.keywords)
        # Hooks written for pytest.Function read fixturenames; the host side needs no fixtures.
        self.fixturenames: list[str] = []
        # The guest's own timing of this test (seconds); the host's includes the shared boot.
        self.guest_duration_s: float | None = None

    def runtest(self) -> None:
        run = guest_run(self.config)
        if run.error is not None:
            raise GuestFailure(f"VM tier could not run the guest: {run.error}")
        verdict = run.verdict(self.nodeid)
        if verdict is not None:
            self.guest_duration_s = verdict.duration_s
        if verdict is None:
            rc = run.vm.returncode if run.vm is not None else "?"
            raise GuestFailure(
                f"the guest reported no verdict for {self.nodeid} (guest pytest exited {rc})\n"
                f"--- guest output tail ---\n{run.output_tail()}"
            )
        if verdict.outcome is Outcome.SKIPPED:
            pytest.skip(f"in the guest: {verdict.message}")
        if verdict.outcome is Outcome.XFAILED:
            pytest.xfail(f"in the guest: {verdict.message}")
        if verdict.outcome in (Outcome.FAILED, Outcome.ERROR):
            where = "setup/teardown error" if verdict.outcome is Outcome.ERROR else "failed"
            raise GuestFailure(f"{where} in the guest: {verdict.message}\n{verdict.text}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, GuestFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self._reportinfo


def replace_with_guest_items(config: pytest.Config, items: list[pytest.Item], under: Path) -> None:
    """Replace, in place, each item whose file is below *under* with a GuestTestItem of the same node id."""
    nodeids = config.stash.setdefault(_NODEIDS, [])
    for i, item in enumerate(items):
        if item.path.is_relative_to(under) and not isinstance(item, GuestTestItem):
            items[i] = GuestTestItem.from_parent(item.parent, name=item.name, origin=item)
            nodeids.append(item.nodeid)


def guest_run(config: pytest.Config) -> GuestRun:
    """The session's one guest run of every replaced node id, started on first use."""
    if _RUN not in config.stash:
        config.stash[_RUN] = run_guest_pytest(config.stash[_NODEIDS], config.rootpath)
    return config.stash[_RUN]


def summary_line(config: pytest.Config) -> str | None:
    """One line for the terminal summary about the guest run, None if no guest ran this session."""
    run = config.stash.get(_RUN, None)
    if run is None:
        return None
    if run.vm is None:
        return f"VM tier: guest did not run: {run.error.reason if run.error else '?'}"
    return (
        f"VM tier: {len(config.stash[_NODEIDS])} tests in one guest, guest pytest exited "
        f"{run.vm.returncode} after {run.vm.duration_s:.1f} s (boot included)"
    )
