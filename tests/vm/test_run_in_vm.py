"""run_in_vm boots each stock kernel tier, runs one command and hands back its status; qemu never outlives it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vm.guest_pytest import junit_address, parse_junit
from vm.harness import VMTimeoutError, run_in_vm
from vm.kernels import TIERS
from vm.pytest_items import tier_kernel_or_skip

REPO = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[str]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process exited while we listed /proc
        comm, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            out.append(comm)
    return out


@pytest.mark.parametrize("tier", [t.series for t in TIERS])
def test_command_exit_status_output_and_work_share_writes_come_back_to_the_host(tier: str, tmp_path: Path) -> None:
    kernel = tier_kernel_or_skip(tier)
    script = 'echo "lsm=$(cat /sys/kernel/security/lsm)"; echo "release=$(uname -r)"; echo "$GREETING" >from-guest'
    script += "; exit 7"
    env = {"GREETING": "hello host"}
    result = run_in_vm(["/bin/sh", "-c", script], env=env, workdir=tmp_path, timeout_s=120, kernel=kernel)
    assert result.returncode == 7
    assert "bpf" in result.output.split("lsm=", 1)[1].split("\n", 1)[0].strip().split(",")
    assert f"release={kernel.release}\n" in result.output
    assert result.kernel_release == kernel.release
    assert (tmp_path / "from-guest").read_text() == "hello host\n"
    assert "vm-init: job exited 7" in result.console
    assert result.duration_s > 0


def test_guest_root_is_the_host_tree_read_only(tmp_path: Path) -> None:
    result = run_in_vm(
        ["/bin/sh", "-c", "test -f pyproject.toml && ! touch written-by-guest"],
        env={},
        workdir=tmp_path,
        cwd=REPO,  # visible even when the clone is under /tmp, which the guest covers with its tmpfs
        timeout_s=120,
    )
    assert result.returncode == 0, result.output
    assert not (REPO / "written-by-guest").exists()


def test_timeout_kills_qemu_and_leaves_no_child_process() -> None:
    with pytest.raises(VMTimeoutError) as excinfo:
        run_in_vm(["/bin/sleep", "600"], env={}, timeout_s=1.0)
    assert "qemu killed" in str(excinfo.value)
    assert not [c for c in _children(os.getpid()) if "qemu" in c or "setpriv" in c]


def _lsm_tier_without_kernels(tmp_path: Path, require: bool) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYBPFGUARD_VM_ROOTS=str(tmp_path))  # an empty root: no tier finds a kernel
    env.pop("PYBPFGUARD_REQUIRE_KERNEL", None)
    if require:
        env["PYBPFGUARD_REQUIRE_KERNEL"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/lsm", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-rA"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lsm_tier_fails_the_base_kernel_tests_and_skips_a_missing_optional_kernel(tmp_path: Path) -> None:
    proc = _lsm_tier_without_kernels(tmp_path, require=False)
    lines = proc.stdout.splitlines()
    failed = [line.split(" ")[1] for line in lines if line.startswith("FAILED ")]
    assert proc.returncode == 1, proc.stdout
    assert failed and all(nodeid.endswith("6.1]") for nodeid in failed), proc.stdout
    assert lines[-1].startswith(f"{len(failed)} failed, {len(failed)} skipped in "), proc.stdout
    assert "kernel tier 6.12 not installed" in proc.stdout
    assert "no usable 6.1 kernel" in proc.stdout


def test_lsm_tier_fails_instead_of_skipping_a_missing_kernel_when_kernels_are_required(tmp_path: Path) -> None:
    proc = _lsm_tier_without_kernels(tmp_path, require=True)
    summary = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stdout
    assert "failed" in summary
    assert "passed" not in summary
    assert "skipped" not in summary
    assert "kernel tier 6.12 is required (PYBPFGUARD_REQUIRE_KERNEL=1) and missing" in proc.stdout
    assert ".ci/vm-kernels" in proc.stdout


def test_junit_verdicts_map_back_to_node_ids_with_classes_and_parameters(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "test_sample.py").write_text(
        "import pytest\n"
        "class TestGroup:\n"
        "    @pytest.mark.parametrize('p', ['a/b', 'c::d'])\n"
        "    def test_param(self, p):\n"
        "        assert p != 'c::d', 'param failed'\n"
        "def test_skip():\n"
        "    pytest.skip('not here')\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    junit = tmp_path / "junit.xml"
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "pkg"]
    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    subprocess.run([*args, f"--junitxml={junit}"], cwd=tmp_path, env=env, capture_output=True, check=False)
    collected = subprocess.run([*args, "--collect-only", "-q"], cwd=tmp_path, env=env, capture_output=True, text=True)
    nodeids = [line for line in collected.stdout.splitlines() if "::" in line]
    verdicts = parse_junit(junit.read_text())
    outcomes = {nodeid: verdicts[junit_address(nodeid)].outcome.value for nodeid in nodeids}
    assert outcomes == {
        "pkg/test_sample.py::TestGroup::test_param[a/b]": "passed",
        "pkg/test_sample.py::TestGroup::test_param[c::d]": "failed",
        "pkg/test_sample.py::test_skip": "skipped",
    }
    assert "param failed" in verdicts[junit_address("pkg/test_sample.py::TestGroup::test_param[c::d]")].text
