"""The daemon's start-up through the per-boot BTF cache (pybpfguard.agent.btfcache): the first start of a
boot parses BTF and writes the cache, the next reads it and enforces and reports exactly as before."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.daemon.conftest import run_in_cgroup

pytestmark = pytest.mark.kernel


def _started_line(agent) -> str:
    return next(line for line in agent.stderr if "agent started" in line)


def test_second_start_reads_the_btf_cache_and_still_enforces_and_reports_execs(start_agent, agent_env, tmp_path,
                                                                                test_cgroup):
    cache = tmp_path / "btf-cache.json"
    agent_env["PYBPFGUARD_BTF_CACHE_PATH"] = str(cache)
    first = start_agent("--enforce", "--enforce-signal=none")
    assert "btf=btf" in _started_line(first) and cache.exists()
    first.stop()

    agent = start_agent("--enforce", "--enforce-signal=none")
    assert "btf=cache" in _started_line(agent)
    secret = tmp_path / "denied-after-cached-start"
    secret.write_text("s3cret")
    agent.cli("block", "add", str(secret))
    out = subprocess.run(["cat", str(secret)], capture_output=True, text=True)
    assert out.returncode != 0 and "Operation not permitted" in out.stderr
    agent.wait_for(lambda e: e["type"] == "block" and e.get("path") == str(secret))
    child = run_in_cgroup(test_cgroup, ["/bin/true"])
    assert child.returncode == 0
    agent.wait_for(lambda e: e["type"] == "exec" and e.get("path") == os.path.realpath("/bin/true")
                   and e["cgid"] == os.stat(test_cgroup).st_ino)


def test_corrupt_btf_cache_is_rewritten_by_the_next_start(start_agent, agent_env, tmp_path):
    cache = tmp_path / "btf-cache.json"
    cache.write_bytes(b"{garbage")
    cache.chmod(0o600)
    agent_env["PYBPFGUARD_BTF_CACHE_PATH"] = str(cache)
    agent = start_agent()
    assert "btf=btf" in _started_line(agent)
    agent.stop()
    assert cache.read_bytes().startswith(b'{"format":"pybpfguard.btfcache/1"')
    assert "btf=cache" in _started_line(start_agent())
