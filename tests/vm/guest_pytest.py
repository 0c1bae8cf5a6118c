"""Run a set of pytest node ids inside one guest and read back a verdict per node id.

One boot serves the whole tier: the guest runs ``python -m pytest <node ids> --junitxml=<shared>/junit.xml``
and the host maps each junit ``<testcase>`` back to its node id. The host-side items that report these
verdicts live in ``tests/vm/pytest_items.py``.

The junit address of a node id (what pytest's junitxml plugin writes): the file part with "/" turned into
"." and ".py" dropped, then any class names, joined with "." as ``classname``; the function name with its
parameter id (``test_x[a-b]``) as ``name``. Parameter ids stay untouched even if they contain "::" or "/".
"""

from __future__ import annotations

import enum
import os
import re
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .harness import VMError, VMResult, kernel_for, run_in_vm

# Guest pytest: plugin autoload costs about 7 s under TCG; the repo is read-only in the guest.
GUEST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "PYBPFGUARD_IN_VM": "1",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}
# Host variables the guest run inherits when set (PYBPFGUARD_REQUIRE_KERNEL: no skip may pass there either).
FORWARDED_ENV = ("PYBPFGUARD_REQUIRE_KERNEL",)
DEFAULT_TIMEOUT_S = 300.0
OUTPUT_TAIL_LINES = 60


class Outcome(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"  # the test body failed
    ERROR = "error"  # setup or teardown failed
    SKIPPED = "skipped"
    XFAILED = "xfailed"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The guest's result for one node id: ``outcome``, ``message`` (one line), ``text`` (longrepr and
    captured output), ``duration_s`` (the guest's own timing of setup + call + teardown, seconds)."""

    outcome: Outcome
    message: str
    text: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class GuestRun:
    """One guest pytest run: ``verdicts`` by junit address, the ``vm`` result, or the ``error`` that
    prevented it (then ``vm`` is None and every test must fail with it)."""

    verdicts: dict[tuple[str, str], Verdict]
    vm: VMResult | None
    error: VMError | None

    def verdict(self, nodeid: str) -> Verdict | None:
        return self.verdicts.get(junit_address(nodeid))

    def output_tail(self) -> str:
        text = self.vm.output if self.vm is not None else ""
        return "\n".join(text.splitlines()[-OUTPUT_TAIL_LINES:])


def junit_address(nodeid: str) -> tuple[str, str]:
    """(classname, name) under which pytest's junitxml records *nodeid*."""
    path_part, bracket, params = nodeid.partition("[")
    parts = path_part.split("::")
    parts[0] = parts[0].replace("/", ".").removesuffix(".py")
    parts[-1] += bracket + params
    return ".".join(parts[:-1]), parts[-1]


_SECTION_HEADER = re.compile(r"^-+ Captured \w+ -+$")


def _has_content(captured: str) -> bool:
    """True if junit captured output holds more than pytest's empty "--- Captured Out ---" headers."""
    return any(line.strip() and not _SECTION_HEADER.match(line.strip()) for line in captured.splitlines())


_CHILD_OUTCOME = {"failure": Outcome.FAILED, "error": Outcome.ERROR}


def parse_junit(xml_text: str) -> dict[tuple[str, str], Verdict]:
    """Verdicts by (classname, name) from a pytest junit XML report (xunit2 family).

    A testcase with both a failure and an error (a teardown error after a failed call) is FAILED
    and its text holds both.
    """
    verdicts = {}
    for case in ET.fromstring(xml_text).iter("testcase"):
        outcome, messages, details, captured = Outcome.PASSED, [], [], []
        for child in case:
            if child.tag in ("system-out", "system-err"):
                if _has_content(child.text or ""):
                    captured.append(f"--- guest {child.tag} ---\n{child.text.rstrip()}")
                continue
            if child.tag in _CHILD_OUTCOME:
                if outcome is not Outcome.FAILED:
                    outcome = _CHILD_OUTCOME[child.tag]
            elif child.tag == "skipped":
                outcome = Outcome.XFAILED if child.get("type") == "pytest.xfail" else Outcome.SKIPPED
            else:
                continue
            messages.append(child.get("message", ""))
            details.append((child.text or "").rstrip())
        key = (case.get("classname", ""), case.get("name", ""))
        message = "; ".join(m for m in messages if m)
        verdicts[key] = Verdict(outcome, message, "\n".join(details + captured), float(case.get("time", 0)))
    return verdicts


def run_guest_pytest(
    nodeids: list[str], rootdir: Path, tier: str | None = None, timeout_s: float | None = None
) -> GuestRun:
    """Boot one guest of kernel tier *tier* (tests/vm/kernels.py; default the first) and run *nodeids*
    (relative to *rootdir*) with the host's real Python interpreter.

    *timeout_s* defaults to ``PYBPFGUARD_VM_TIMEOUT_S`` or 300 s. Never raises VMError: it is returned in
    GuestRun.error so each test can report it.
    """
    if timeout_s is None:
        timeout_s = float(os.environ.get("PYBPFGUARD_VM_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    # pyenv shims are shell scripts that re-resolve the interpreter: seconds under emulation.
    python = os.path.realpath(sys.executable)
    env = dict(GUEST_ENV)
    env.update({k: os.environ[k] for k in FORWARDED_ENV if k in os.environ})
    work = Path(tempfile.mkdtemp(prefix="pybpfguard-lsm-"))
    try:
        junit = work / "junit.xml"
        argv = [
            python, "-m", "pytest", *nodeids, "-q", "-p", "no:cacheprovider",
            # addopts may name options of plugins that autoload is off for (--benchmark-skip).
            "-o", "addopts=", "-o", "junit_logging=all", f"--junitxml={junit}",
        ]  # fmt: skip
        try:
            vm = run_in_vm(argv, env=env, workdir=work, cwd=rootdir, timeout_s=timeout_s, kernel=kernel_for(tier))
        except VMError as err:
            return GuestRun({}, None, err)
        verdicts = parse_junit(junit.read_text()) if junit.exists() else {}
        return GuestRun(verdicts, vm, None)
    finally:
        shutil.rmtree(work)
