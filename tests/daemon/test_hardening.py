"""Issue 'rules that hold': every accepted rule is enforced, or the user is told; a clean stop is no fault."""

from __future__ import annotations

import signal

import pytest

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("strict", [False, True])
def test_a_clean_stop_reports_no_fault_and_exits_0(start_agent, signum, strict):
    agent = start_agent("--enforce", "--enforce-signal=none", *(["--strict-degrade"] if strict else []))
    agent.proc.send_signal(signum)
    assert agent.proc.wait(20) == 0, "".join(agent.stderr)
    agent.stop()
    states = [e for e in agent.events if e.get("type") == "state_change"]
    assert [e["state"] for e in states] == ["ENFORCE"], states
    assert not [line for line in agent.stderr if "ERROR" in line or '"level":"error"' in line], agent.stderr
