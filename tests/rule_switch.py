"""The host half of the atomic-apply test: a child opens a file denied before and after every rule-set switch
in a tight loop while the switches happen, and not one open may succeed.

Reusable by any switch: :func:`assert_denied_throughout` takes a callable that performs one switch (write the
idle rule set, flip ``rule_set``, let the enforcer catch up) and returns only once it is in force, e.g. a
``policy apply`` that waited for the daemon's acknowledgement, or tests/guard/test_rule_switch.py's direct
map writes followed by a resync.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

OPENER = Path(__file__).with_name("guard") / "opener.py"


def _enter(cgroup: Path) -> Callable[[], None]:
    def enter() -> None:
        with open(cgroup / "cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
    return enter


def assert_denied_throughout(path: Path, switch: Callable[[int], None], *, switches: int = 50,
                             cgroup: Path | None = None, timeout_s: float = 120.0) -> dict[str, int]:
    """Start a child (moved into *cgroup* first, when given) that opens *path* in a tight loop; once its first
    open was answered, call ``switch(i)`` for i in ``range(switches)``, then stop it. Asserts that every open
    failed with EPERM (none succeeded, none failed otherwise); returns the child's counts
    ``{"denied", "allowed", "other"}``. *path* must be denied to the child before the first switch and by
    every rule set switched to."""
    argv = [sys.executable, str(OPENER), "until_usr1", os.fsencode(path).hex()]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=None if cgroup is None else _enter(cgroup))
    try:
        assert child.stdout is not None
        ready = child.stdout.readline()
        assert json.loads(ready or "{}").get("ready"), f"child did not start: {ready!r} {child.stderr.read()}"
        for i in range(switches):
            switch(i)
        child.send_signal(signal.SIGUSR1)
        out, err = child.communicate(timeout=timeout_s)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    counts = json.loads(out.strip().splitlines()[-1])
    counts.pop("pid", None)
    assert counts["allowed"] == 0 and counts["other"] == 0, f"an open got through during the switches: {counts}"
    assert counts["denied"] > 0, counts
    return counts
