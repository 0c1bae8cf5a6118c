"""The agent daemon as a subprocess, isolated: private bpffs pin root, private state dir, its own agent
cgroup, events read from its stdout. Rule edits go through the real CLI in another process."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cgroup2_mount

START_TIMEOUT_S = 30.0


class AgentProcess:
    """A running ``python -m pybpfguard run``; ``events`` collects every JSON line it printed."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.env = env
        self.proc = subprocess.Popen([sys.executable, "-m", "pybpfguard", "run", *argv], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.events: list[dict[str, Any]] = []
        self.lines: list[bytes] = []
        self.stderr: list[str] = []
        self._ready = threading.Event()
        self._new = queue.Queue[None]()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self._ready.wait(START_TIMEOUT_S):
            self.stop()
            raise RuntimeError("agent did not start:\n" + "".join(self.stderr))

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self.events.append(json.loads(line))
            self._new.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.stderr.append(line)
            if "agent started" in line:
                self._ready.set()
        self._ready.set()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``python -m pybpfguard <args>`` against this agent's pins and state."""
        out = subprocess.run([sys.executable, "-m", "pybpfguard", *args], env=self.env, capture_output=True,
                             text=True, timeout=60)
        if check and out.returncode != 0:
            raise AssertionError(f"pybpfguard {' '.join(args)} exited {out.returncode}: {out.stderr}")
        return out

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0) -> dict[str, Any]:
        """The first event matching *pred*, waiting up to *timeout_s*; AssertionError otherwise."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while True:
            for event in self.events[seen:]:
                if pred(event):
                    return event
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching event in {timeout_s}s; last events: {self.events[-5:]}")
            try:
                self._new.get(timeout=min(left, 0.2))
            except queue.Empty:
                pass

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def agent_env(bpffs: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment pointing every location of the agent at this test's own objects."""
    agent_cg = cgroup2_mount() / f"pybpfguard-test-agent-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, PYBPFGUARD_PIN_ROOT=str(bpffs / "pybpfguard"),
               PYBPFGUARD_STATE_DIR=str(tmp_path / "state"), PYBPFGUARD_AGENT_CGROUP=str(agent_cg))
    yield env
    if agent_cg.exists():  # the daemon removes it on a clean exit; a crash must not leave it behind
        for pid in (agent_cg / "cgroup.procs").read_text().split():
            (cgroup2_mount() / "cgroup.procs").write_text(pid)
        agent_cg.rmdir()


@pytest.fixture
def start_agent(agent_env: dict[str, str]) -> Iterator[Callable[..., AgentProcess]]:
    """``start_agent(*run_args)`` starts a daemon; every one started is stopped after the test."""
    started: list[AgentProcess] = []

    def start(*argv: str) -> AgentProcess:
        agent = AgentProcess(list(argv), agent_env)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def run_in_cgroup(cgroup: Path, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
    """Run *argv* as a child that first moves itself into *cgroup*."""

    def enter() -> None:
        with open(cgroup / "cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    return subprocess.run(argv, preexec_fn=enter, capture_output=True, timeout=30, **kw)
