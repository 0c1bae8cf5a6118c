"""open() overhead of the BPF LSM path (issue 4): a file that is NOT denied, 10,000 deny rules loaded.

This host refuses LSM programs, so the measurement runs in the VM tier's guest (tests/vm: Debian 6.1,
``bpf`` in its LSM list, qemu TCG, one vCPU): ``run_in_vm`` boots one guest that runs this module with
``--guest``. In the guest, in one run:

0. (below) 10,000 files on the guest's tmpfs, their inode keys written to the pinned ``deny_inode`` of a private
   pin root (one ``BPF_MAP_UPDATE_BATCH``; deny.db is not read by the LSM path), the policy-empty hint
   cleared as ``block add`` does (``rules.refresh_hints``);
1. without the daemon, interleaved rounds (order rotated each round) of: no program; a ``return 0``
   ``lsm/file_open`` program (the floor of any BPF LSM hook: trampoline and dispatch); the daemon's own
   generated ``file_open`` program on the same pinned maps, each attached only for its round. Paired
   per-round ratios cancel the emulated CPU's drift;
2. floor, before: ROUNDS rounds of OPENS ``open(O_RDONLY)`` + ``close`` of another file in the same
   directory, each timed on its own (ns, ``time.perf_counter_ns``), no agent;
3. the daemon (``python -m pybpfguard run --enforce --enforce-signal=none``, the isolated one of
   tests/daemon/conftest.py) with its ``file_open`` LSM program attached; one denied open checks that it
   enforces; the same rounds;
4. the daemon held with SIGSTOP (its program still attached, the daemon itself never scheduled): the
   same rounds, so the kernel program's cost is told apart from the daemon's own wake-ups; then one round
   with ``kernel.bpf_stats_enabled`` for the program's own ns per run (bpftool's ``run_time_ns``);
5. floor, after: the daemon stopped (program detached), the same rounds.

Reported (``extra_info``): median and p95 per open of each phase over all its samples, per-round
medians, and the overhead of the agent phase against the floor (before and after pooled). Under TCG
absolute times are those of an emulated CPU and move with the host's load: only the ratios mean
anything, and the before/after floors show how much the guest drifted during the run.

Run (host): ``python3 -m pytest -o addopts="" benchmarks/bench_lsm_overhead.py --benchmark-columns=rounds``;
``python3 benchmarks/bench_lsm_overhead.py`` prints the guest's JSON. On a host with BPF LSM:
``python3 -m benchmarks.bench_lsm_overhead --guest`` (from the repository root) measures it directly.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script: tests.* for the VM harness and the daemon helper

from benchmarks.timing import open_times_ns  # noqa: E402 - needs the repository root on sys.path

RULES = 10_000
OPENS = 5_000  # timed open+close pairs per round
ROUNDS = 11  # per phase
WARMUP_OPENS = 2_000  # TCG translates the loop's code on first use: not timed
GUEST_TIMEOUT_S = 600.0
RESULT_FILE = "lsm_overhead.json"


def phase(path: bytes) -> dict[str, object]:
    """ROUNDS rounds after a warm-up: median and p95 over every sample (ns), and each round's median."""
    open_times_ns(path, WARMUP_OPENS)
    rounds = [open_times_ns(path, OPENS) for _ in range(ROUNDS)]
    samples = [t for r in rounds for t in r]
    return {"median_ns": statistics.median(samples), "p95_ns": statistics.quantiles(samples, n=100)[94],
            "round_medians_ns": [statistics.median(r) for r in rounds], "_samples": samples}


@contextmanager
def private_pin_root() -> Iterator[Path]:
    """A bpffs mounted on a temp dir (unmounted with everything pinned in it afterwards)."""
    with tempfile.TemporaryDirectory(prefix="bench-lsm-bpffs-") as d:
        subprocess.run(["mount", "-t", "bpf", "bpf", d], check=True)
        try:
            yield Path(d) / "pybpfguard"
        finally:
            subprocess.run(["umount", "-l", d], check=False)


def load_deny_rules(pin_root: Path, rule_dir: Path) -> float:
    """Create RULES files in *rule_dir* and deny them all by inode; seconds taken."""
    from pybpfguard.agent.maps import DENY_ALWAYS, INODE_KEY, PinnedMaps
    from pybpfguard.agent.paths import inode_key
    from pybpfguard.agent.rules import refresh_hints

    start = time.perf_counter()
    keys = []
    for i in range(RULES):
        p = rule_dir / f"f{i:05d}"
        p.write_bytes(b"")
        ino, dev = inode_key(os.stat(p))
        keys.append(INODE_KEY.value(ino=ino, dev=dev))
    with PinnedMaps.open(pin_root) as pins:
        assert pins.deny_inode.update_batch(keys, [DENY_ALWAYS] * RULES) == RULES
        refresh_hints(pins)
    return time.perf_counter() - start


def file_open_run_stats(path: bytes) -> dict[str, float]:
    """The ``file_open`` program's own time per run (``run_time_ns / run_cnt`` as bpftool reports them)
    over one round of opens of *path*, with ``kernel.bpf_stats_enabled`` on only for that round (the
    kernel then reads the clock around every run, so this round is not one of the timed ones)."""
    stats_switch = Path("/proc/sys/kernel/bpf_stats_enabled")

    def show() -> dict[str, int]:
        out = subprocess.run(["bpftool", "-j", "prog", "show", "name", "file_open"], capture_output=True,
                             text=True, check=True, timeout=60).stdout
        prog = json.loads(out)
        prog = prog[0] if isinstance(prog, list) else prog
        return {"run_time_ns": prog.get("run_time_ns", 0), "run_cnt": prog.get("run_cnt", 0)}

    stats_switch.write_text("1")
    try:
        first = show()
        open_times_ns(path, OPENS)
        last = show()
    finally:
        stats_switch.write_text("0")
    runs = last["run_cnt"] - first["run_cnt"]
    return {"runs": runs, "ns_per_run": round((last["run_time_ns"] - first["run_time_ns"]) / max(runs, 1), 1)}


@contextmanager
def lsm_programs(pin_root: Path) -> Iterator[dict[str, object]]:
    """Two loaded, unattached ``lsm/file_open`` programs: ``agent``, the daemon's generated program on the
    pinned maps (the 10,000 rules) plus private ring and signal-state maps, and ``noop`` (``return 0``),
    the least any BPF LSM hook costs (trampoline and dispatch). Closed afterwards."""
    from pybpfguard.agent.maps import PinnedMaps
    from pybpfguard.agent.programs.file_lsm import file_open_program
    from pybpfguard.agent.programs.load import load_program
    from pybpfguard.agent.sensors import private_specs
    from pybpfguard.bpf.asm import R0, Insn
    from pybpfguard.bpf.btf.layout import Layout
    from pybpfguard.bpf.btf.spec import load_vmlinux
    from pybpfguard.bpf.maps import Map
    from pybpfguard.bpf.program import Program, ProgramSpec
    from pybpfguard.bpf.types import AttachType, ProgType

    with PinnedMaps.open(pin_root, create=False) as pins:
        private = {name: Map.create(spec) for name, spec in private_specs(1 << 20).items()}
        noop_spec = ProgramSpec(name="file_open_noop", prog_type=ProgType.BPF_PROG_TYPE_LSM,
                                insns=(Insn.mov64_imm(R0, 0), Insn.exit()),
                                expected_attach_type=AttachType.BPF_LSM_MAC, attach_to="file_open")
        try:
            with (load_program(file_open_program(Layout.from_btf(load_vmlinux())), {**pins.maps, **private})
                  as agent, Program.load(noop_spec) as noop):
                yield {"agent": agent, "noop": noop}
        finally:
            for m in private.values():
                m.close()


def interleaved_program_rounds(pin_root: Path, path: bytes) -> dict[str, object]:
    """ROUNDS rounds of: no program, the noop program, the agent's program (each attached only for its
    own OPENS opens of *path*), in an order rotated every round so drift of the emulated CPU falls on
    every variant alike. Per variant: pooled median and p95, per-round medians, and the median over rounds
    of the round's ratio to its own no-program median (paired, drift-free)."""
    from pybpfguard.bpf.link import attach_lsm

    variants = ("none", "noop", "agent")
    rounds: dict[str, list[list[int]]] = {v: [] for v in variants}
    with lsm_programs(pin_root) as progs:
        open_times_ns(path, WARMUP_OPENS)
        for r in range(ROUNDS):
            for v in variants[r % 3:] + variants[:r % 3]:
                if v == "none":
                    rounds[v].append(open_times_ns(path, OPENS))
                    continue
                with attach_lsm(progs[v]):  # type: ignore[arg-type]
                    rounds[v].append(open_times_ns(path, OPENS))
    out: dict[str, object] = {}
    none_medians = [statistics.median(r) for r in rounds["none"]]
    for v in variants:
        samples = [t for r in rounds[v] for t in r]
        medians = [statistics.median(r) for r in rounds[v]]
        out[v] = {"median_ns": statistics.median(samples), "p95_ns": statistics.quantiles(samples, n=100)[94],
                  "round_medians_ns": medians,
                  "paired_overhead_median_pct": round((statistics.median(
                      m / n for m, n in zip(medians, none_medians, strict=True)) - 1) * 100, 2)}
    return out


def _overhead_pct(value: float, floor: float) -> float:
    return round((value / floor - 1) * 100, 2)


def measure_in_guest() -> dict[str, object]:
    """Steps 0-5 of the module docstring, in this (LSM-capable) kernel; the results as a JSON-able dict."""
    from tests.conftest import cgroup2_mount
    from tests.daemon.conftest import AgentProcess

    with private_pin_root() as pin_root, tempfile.TemporaryDirectory(prefix="bench-lsm-") as d:
        work = Path(d)
        (work / "rules").mkdir()
        allowed = work / "rules" / "allowed"
        allowed.write_text("open me")
        load_s = load_deny_rules(pin_root, work / "rules")
        env = dict(os.environ, PYBPFGUARD_PIN_ROOT=str(pin_root), PYBPFGUARD_STATE_DIR=str(work / "state"),
                   PYBPFGUARD_AGENT_CGROUP=str(cgroup2_mount() / f"pybpfguard-bench-{uuid.uuid4().hex[:8]}"))
        target = os.fsencode(allowed)
        programs = interleaved_program_rounds(pin_root, target)
        before = phase(target)
        t = time.perf_counter()
        agent = AgentProcess(["--enforce", "--enforce-signal=none"], env)
        try:
            start_s = time.perf_counter() - t
            state = agent.wait_for(lambda e: e["type"] == "state_change")
            assert "file=bpf_lsm" in state["detail"], state  # the LSM path, not fanotify
            try:
                open(work / "rules" / f"f{RULES - 1:05d}").close()
                raise AssertionError("the agent did not deny a file under rule")
            except PermissionError:
                pass
            with_agent = phase(target)
            agent.proc.send_signal(signal.SIGSTOP)  # the program stays attached; the daemon never runs
            try:
                program_only = phase(target)
                prog_stats = file_open_run_stats(target)
            finally:
                agent.proc.send_signal(signal.SIGCONT)
        finally:
            assert agent.stop() == 0, "".join(agent.stderr)
        after = phase(target)
    floor = before["_samples"] + after["_samples"]  # type: ignore[operator]
    floor_median = statistics.median(floor)
    floor_p95 = statistics.quantiles(floor, n=100)[94]
    for p in (before, after, with_agent, program_only):
        del p["_samples"]
    return {
        "kernel": os.uname().release, "python": sys.version.split()[0], "rules": RULES, "opens_per_round": OPENS,
        "rounds_per_phase": ROUNDS, "rule_load_s": round(load_s, 2), "agent_start_s": round(start_s, 2),
        "no_agent_before": before, "with_agent": with_agent, "program_only_daemon_stopped": program_only,
        "no_agent_after": after, "file_open_prog_stats": prog_stats,
        "floor_median_ns": floor_median, "floor_p95_ns": floor_p95,
        "overhead_median_pct": _overhead_pct(with_agent["median_ns"], floor_median),  # type: ignore[arg-type]
        "overhead_p95_pct": _overhead_pct(with_agent["p95_ns"], floor_p95),  # type: ignore[arg-type]
        "program_only_overhead_median_pct": _overhead_pct(program_only["median_ns"], floor_median),  # type: ignore[arg-type]
        "program_only_overhead_p95_pct": _overhead_pct(program_only["p95_ns"], floor_p95),  # type: ignore[arg-type]
        "interleaved_programs": programs,
        "drift_after_vs_before_median_pct": _overhead_pct(after["median_ns"], before["median_ns"]),  # type: ignore[arg-type]
    }


def measure_via_vm() -> dict[str, object]:
    """Boot one guest, run ``--guest`` there, return its result plus the guest's wall time and the host's
    load. Raises AssertionError with the guest's output tail if the guest run failed."""
    from tests.vm.guest_pytest import GUEST_ENV
    from tests.vm.harness import run_in_vm

    with tempfile.TemporaryDirectory(prefix="bench-lsm-vm-") as work:
        out = Path(work) / RESULT_FILE
        argv = [os.path.realpath(sys.executable), "-m", "benchmarks.bench_lsm_overhead", "--guest", str(out)]
        vm = run_in_vm(argv, env=dict(GUEST_ENV), workdir=Path(work), cwd=REPO, timeout_s=GUEST_TIMEOUT_S)
        if vm.returncode != 0 or not out.exists():
            raise AssertionError(f"guest run exited {vm.returncode}:\n{vm.output[-4000:]}")
        result = json.loads(out.read_text())
    result.update(guest_wall_s=round(vm.duration_s, 1), host_loadavg_1m=os.getloadavg()[0])
    return result


def test_lsm_open_overhead_of_a_non_denied_file_with_10000_deny_rules_in_the_guest(benchmark):
    result = benchmark.pedantic(measure_via_vm, rounds=1, iterations=1)
    benchmark.extra_info.update(result)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--guest"]:
        text = json.dumps(measure_in_guest())
        if len(sys.argv) > 2:
            Path(sys.argv[2]).write_text(text)
        print(text)
    else:
        print(json.dumps(measure_via_vm()))
