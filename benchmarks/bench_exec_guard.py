"""ExecGuard (fanotify exec rules, issue 9): what an exec costs while a ``deny_comm`` rule is active.

A copy of /bin/true on a private tmpfs (the only filesystem marked, so no other exec on the host waits for
this benchmark) is run with ``subprocess.run`` 200 times per round, 5 rounds, without a guard and with an
ExecGuard whose ``deny_comm`` names nothing that runs, alternately: the median of the round medians, and
the best round. Each exec raises one event (the binary; its loader lives on another, unmarked filesystem,
so the loader pass costs its lookup but no second round trip).

Run: ``python3 -m pytest -o addopts="" benchmarks/bench_exec_guard.py -q`` (numbers in ``extra_info``;
``python3 benchmarks/bench_exec_guard.py`` prints them).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from pybpfguard.agent.decision import Mode
from pybpfguard.agent.exec_guard import ExecGuard
from pybpfguard.agent.execdecision import ExecRules
from pybpfguard.agent.options import EnforceSignal
from pybpfguard.agent.paths import kernel_dev

EXECS = 200
ROUNDS = 5


def _median_us(binary: str) -> float:
    times = []
    for _ in range(EXECS):
        start = time.perf_counter()
        subprocess.run([binary], check=True)  # fork + exec; never os.posix_spawn here (exec_guard.py)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def measure() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-exec-guard-") as d:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=755", "bench-exec-guard", d], check=True)
        try:
            binary = os.path.join(d, "bench-true")
            shutil.copy2(os.path.realpath("/bin/true"), binary)
            dev = kernel_dev(os.stat(d).st_dev)
            rules = ExecRules(deny_comm=frozenset({b"pbg-no-such-x"}))
            floor, guarded = [], []
            for _ in range(ROUNDS):
                floor.append(_median_us(binary))
                with ExecGuard(lambda: rules, mode=Mode.ENFORCE, enforce_signal=EnforceSignal.NONE,
                               mount_filter=lambda m: m.dev == dev) as guard:
                    assert list(guard.coverage().marked) == [dev]
                    guarded.append(_median_us(binary))
                    assert guard.stats().blocks == 0 and not guard.errors
        finally:
            subprocess.run(["umount", "-l", d], check=False)
    f, g = statistics.median(floor), statistics.median(guarded)
    return {"execs_per_round": EXECS, "rounds": ROUNDS, "floor_us_per_exec": round(f), "guarded_us_per_exec": round(g),
            "added_us_per_exec": round(g - f), "ratio": round(g / f, 2), "floor_best_round_us": round(min(floor)),
            "guarded_best_round_us": round(min(guarded)), "load": round(os.getloadavg()[0], 1)}


@pytest.fixture
def root_only() -> None:
    if os.geteuid() != 0 or not Path("/bin/true").exists():
        pytest.skip("fanotify permission events need CAP_SYS_ADMIN")


def test_exec_cost_with_an_active_deny_comm_rule(benchmark, root_only):
    benchmark.extra_info.update(benchmark.pedantic(measure, rounds=1, iterations=1))


if __name__ == "__main__":
    print(json.dumps(measure()))
