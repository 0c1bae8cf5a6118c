"""``run``: load and attach the agent's programs, enforce, and turn every decision into one JSON event.

Start-up (spans ``daemon.run`` > ``daemon.load_bpf``, ``daemon.attach_programs``, ``daemon.event_loop``):
one daemon per pin root; open or create the pinned maps; write the runtime configuration; let every sensor
generate its programs from the running kernel's BTF and load them (process tracking seeds its table);
attach, the file sensor picking the file/exec enforcement this kernel really has (BPF LSM, else fanotify
permission marks, else with ``--enforce-fallback=signal`` the exec signal fallback: SIGKILL at
``sched_process_exec``, posture ``exec=signal,file=none``, state ENFORCE_SIGNAL); report it as the posture.
Requested enforcement that nothing enforces is AUDIT_FALLBACK: ``--enforce-gate-mode=fail-closed``
(default) exits 3 then, ``audit-fallback`` runs with the kernel side in audit. ``--strict-degrade`` exits 3 on reaching
AUDIT_FALLBACK or DEGRADED, at start-up or later. SIGTERM/SIGINT: drain the ring, detach, exit 0; the
pinned rules stay.

The daemon names no program, map or hook: each sensor (:mod:`pybpfguard.agent.sensors`) brings its maps,
programs, attach step, fallback chain and posture classes; the daemon runs them in turn (lock, start,
event loop, stop).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable

import msgspec

from pybpfguard.agent import btfcache, config
from pybpfguard.agent.cgroups import CgroupCache
from pybpfguard.agent.events.decode import RecordDecoder, RecordError
from pybpfguard.agent.events.model import DIAG_MAP_PRESSURE, BlockEvent, DiagEvent, StateChangeEvent
from pybpfguard.agent.events.sinks import FanOut, LogTarget, build_sinks
from pybpfguard.agent.instance import AlreadyRunning, InstanceLock, SyncServer
from pybpfguard.agent.logs import Logger, Tracer
from pybpfguard.agent.maps import AGENT_CONFIG, INODE_KEY, PinLayoutMismatch, PinnedMaps
from pybpfguard.agent.options import GateMode, RunOptions
from pybpfguard.agent.posture import Posture, PostureReport, PostureTracker
from pybpfguard.agent.programs.emit import AgentProgram
from pybpfguard.agent.programs.load import load_program
from pybpfguard.agent.rulesync import DaemonSync
from pybpfguard.agent.runtime import RuntimeStatus, remove_runtime, write_runtime
from pybpfguard.agent.selfcgroup import AgentCgroup, AgentCgroupError
from pybpfguard.agent.sensors import RING, SENSORS, Sensor, SensorContext, SensorPosture, private_specs
from pybpfguard.agent.survival import survival_inodes
from pybpfguard.agent.trust import UntrustedPathError, require_private_dir
from pybpfguard.bpf.errors import BPFError, NoSpaceError
from pybpfguard.bpf.maps import Map
from pybpfguard.bpf.program import Program
from pybpfguard.bpf.ringbuf import RingReader

EXIT_OK, EXIT_FAILED, EXIT_ENFORCE_REFUSED = 0, 1, 3
_RING_BATCH = 1024  # records decoded and emitted together; 1,024 keeps a batch of events in cache (8,192: 12 % slower)
_RING_BATCHES = 128  # batches per loop turn before syncs, signals and fanotify get their turn


class Daemon:
    """The running agent. ``start()`` loads and attaches; ``serve()`` runs until ``stop()``; ``close()``."""

    def __init__(self, options: RunOptions, logger: Logger, tracer: Tracer, sinks: FanOut) -> None:
        self.options = options
        self.log = logger
        self.tracer = tracer
        self.sinks = sinks
        self.pin_root = config.pin_root()
        self.maps: dict[str, Map] = {}
        self.pins: PinnedMaps | None = None
        self.programs: list[Program] = []
        self.sensors: list[Sensor] = [sensor() for sensor in SENSORS]
        self.reader: RingReader | None = None
        self.cgroup: AgentCgroup | None = None
        self.cgroups = CgroupCache()
        self.decoder = RecordDecoder(self.cgroups)
        self.tracker = PostureTracker()
        self.report = PostureReport(options.enforce)
        self._sample = 0
        self._stopping = False
        self._sync: SyncServer | None = None
        self._hooks: dict[str, str] = {}
        self._config: dict[str, int] = {}
        self.strict_exit = ""  # why --strict-degrade ends the daemon (exit 3), once it must
        self._drops_reported = 0
        self._next_loss_check = 0.0
        self._sink_drops: dict[str, int] = {}
        self._btf: btfcache.KernelBtf | None = None  # layout and attach ids for the generators (start-up)
        self._rule_sync: DaemonSync | None = None  # edits by any process, acknowledged (rulesync)
        self._unenforced: dict[str, str] = {}  # "<dev>:<ino>" -> why that denied inode is not enforced
        self._rule_faults: list[str] = []  # posture faults of the last resync (replaced by the next)
        self._rules_retry_at = 0.0  # monotonic time before which a failed rule edit is not retried

    # ---- start-up ----------------------------------------------------------------------------------

    def start(self) -> None:
        # the rules' record is trusted like the pins: refused before anything is created (docs/architecture.md)
        require_private_dir(config.state_file("deny.db").parent)
        with self.tracer.span("daemon.load_bpf"):
            self.pins = PinnedMaps.open(self.pin_root, heal=config.env_flag("PIN_HEAL"),
                                        max_deny_inodes=self.options.max_deny_inodes,
                                        max_deny_paths=self.options.max_deny_paths)
            self.maps = dict(self.pins.maps)
            self._rule_sync = DaemonSync(self.pins.rule_sync)
            for name, spec in private_specs(self.options.ringbuf_bytes).items():
                self.maps[name] = Map.create(spec)
            self._write_config()
            # Moving into the agent cgroup waits in the kernel for an RCU grace period (cgroup.procs write:
            # 13-25 ms here); it runs while the programs are generated and verified, and is done before
            # anything attaches, so no hook ever sees the agent unexempted.
            exempt_error: list[BaseException] = []
            exempt = threading.Thread(target=_capture, args=(self._exempt_self, exempt_error), name="exempt_self")
            exempt.start()
            try:
                # losses counted before this run were reported by the run that saw them
                self._drops_reported = sum(v.ringbuf_drops for v in self.pins.block_stats.lookup_elem(0))
                self._btf = btfcache.acquire()
                if self._btf.miss_reason:
                    self.log.debug("kernel BTF parsed: no usable BTF cache", reason=self._btf.miss_reason)
                ctx = self._context()
                for sensor in self.sensors:
                    sensor.load(ctx)
                if unsaved := self._btf.save():
                    self.log.debug("BTF cache not written; the next start parses BTF again", reason=unsaved)
            finally:
                exempt.join()  # also on failure: close() must find the cgroup it has to leave
            if exempt_error:
                raise exempt_error[0]
        with self.tracer.span("daemon.attach_programs"):
            posture = SensorPosture()
            for sensor in self.sensors:
                part = sensor.attach(ctx)
                posture.classes |= part.classes
                posture.hooks |= part.hooks
                posture.faults += part.faults
                posture.started |= part.started
        self.report.faults += posture.faults
        if self.options.enforce:
            self.report.classes = posture.classes
            if self.report.state is Posture.AUDIT_FALLBACK:
                # the effective mode is audit (docs/enforcement.md): no hook may deny what the posture calls audited
                self._write_config(audit_only=1)
                self.log.warn("enforcement requested but not available: running in audit",
                              detail=self.report.detail, gate=self.options.enforce_gate_mode)
        self.reader = RingReader(self.maps[RING])
        self._sync = SyncServer(self.pin_root)
        self._hooks = posture.hooks
        self.resync(reason_code="STARTUP")
        self._rule_sync.beat(time.monotonic())
        self.log.info("agent started", mode="enforce" if self.options.enforce else "audit", **posture.started,
                      pin_root=self.pin_root, btf=self._btf.source)

    def _context(self) -> SensorContext:
        assert self.pins is not None and self._btf is not None
        return SensorContext(options=self.options, log=self.log, pins=self.pins, maps=self.maps, load=self._load,
                             layout=self._btf.layout, decoder=self.decoder, sampled_out=self.sampled_out,
                             write_config=self._write_config)

    def _load(self, prog: AgentProgram) -> Program:
        assert self._btf is not None  # set first thing in start()'s loading
        loaded = load_program(prog, self.maps, attach_btf_id=self._btf.attach_btf_id(prog.attach))
        self.programs.append(loaded)
        return loaded

    def _write_config(self, **changes: int) -> None:
        """Write ``agent_config`` from the run options, with *changes* (field -> value) kept over rewrites."""
        o = self.options
        self._config.update(changes)
        fields = dict(
            audit_only=0 if o.enforce else 1, enforce_signal=o.enforce_signal.value,
            event_sample_rate=o.event_sample_rate, sigkill_escalation_threshold=o.kill_escalation_threshold,
            sigkill_escalation_window_seconds=o.kill_escalation_window_s)
        self.pins.agent_config.update_elem(0, AGENT_CONFIG.value(**(fields | self._config)))

    def _exempt_self(self) -> None:
        """Survival allowlist and the agent's own cgroup (docs/enforcement.md)."""
        survival = self.pins.survival_allowlist
        for ino, dev in survival_inodes():
            try:
                survival.update_elem(INODE_KEY.value(ino=ino, dev=dev), 1)
            except NoSpaceError:  # full (E2BIG): the entries already there stay; any other error is start-up's
                self.log.warn("survival allowlist full; later survival binaries are not exempt",
                              capacity=survival.spec.max_entries)
                break
        self.cgroup = AgentCgroup()
        self._exempt_cgroup()

    def _exempt_cgroup(self) -> None:
        """The agent's cgroup in ``allow_cgroup`` of both rule sets: a `block clear` or a `policy apply
        --reset` (which switches to the other set) must never make the agent deny itself."""
        assert self.pins is not None and self.cgroup is not None
        for rule_set in self.pins.sets:
            rule_set.allow_cgroup.update_elem(self.cgroup.cgid, 1)

    def _publish(self, reason_code: str) -> None:
        """Emit ``state_change`` when the posture moved (requested audit has none to report) and rewrite
        runtime.json, which ``health`` reads."""
        state = self.report.state
        if self.tracker.move(state) and state is not Posture.UNKNOWN:
            self.emit(StateChangeEvent(event_version=1, state=state.value, reason_code=reason_code,
                                       detail=self.report.detail, strict_mode=self.options.strict_degrade,
                                       transition_id=self.tracker.transition_id,
                                       degradation_count=self.tracker.degradation_count))
        if self.options.strict_degrade and state in (Posture.AUDIT_FALLBACK, Posture.DEGRADED):
            self.strict_exit = f"{state.value}: {self.report.detail}"
            self.stop()
        write_runtime(RuntimeStatus(
            pid=os.getpid(), mode="enforce" if self.options.enforce else "audit", state=state.value,
            detail=self.report.detail, enforce_capable=self.report.enforce_capable, hooks=self._hooks,
            agent_cgid=self.cgroup.cgid if self.cgroup is not None else 0, unenforced=self._unenforced))

    # ---- the event loop -----------------------------------------------------------------------------

    def emit(self, event: msgspec.Struct) -> None:
        self.sinks.emit(event)

    def sampled_out(self) -> bool:
        """True for the events ``--event-sample-rate`` N leaves out (all but 1 of N); counters still count
        every match. Kernel-side records (LSM blocks) are sampled by the programs themselves."""
        rate = self.options.event_sample_rate
        if rate <= 1:
            return False
        self._sample += 1
        return self._sample % rate != 0

    def on_records(self, records: Iterable[memoryview]) -> int:
        """Decode one ring batch and emit its events with one sink call; return the records seen."""
        errors: list[RecordError] = []
        events = self.decoder.decode_batch(records, errors)
        for err in errors:
            self.log.warn("undecodable ring record", error=str(err))
        seen = len(events) + len(errors)
        if not events:
            return seen
        if self.options.event_sample_rate > 1:  # the kernel samples block records itself
            events = [e for e in events if isinstance(e, BlockEvent) or not self.sampled_out()]
        self.sinks.emit_many(events)
        return seen

    def _drain_ring(self, batches: int = _RING_BATCHES) -> None:
        """Ring batches until the ring is empty, at most *batches* of them (so a flood cannot starve
        the rule syncs and signals this loop also serves)."""
        assert self.reader is not None
        for _ in range(batches):
            if self.on_records(self.reader.records(_RING_BATCH)) < _RING_BATCH:
                return

    def report_losses(self, now: float) -> None:
        """One ``diag`` per gap: when ``block_stats.ringbuf_drops`` (events lost to a full ring or queue) grew,
        say by how much and the total, so the SIEM sees every hole. Checked at most twice a second."""
        if now < self._next_loss_check:
            return
        self._next_loss_check = now + 0.5
        try:
            total = sum(v.ringbuf_drops for v in self.pins.block_stats.lookup_elem(0))
        except BPFError as err:
            self.log.warn("cannot read block_stats", error=str(err))
            return
        if total > self._drops_reported:
            lost = total - self._drops_reported
            self.emit(DiagEvent(diag_type=DIAG_MAP_PRESSURE, timestamp=time.monotonic_ns(), data1=lost, data2=total,
                                msg=f"{lost} events lost: ring or queue full"))
            self.log.warn("events lost", lost=lost, total=total)
        self._drops_reported = total
        for sink, dropped in self.sinks.dropped().items():
            if dropped > self._sink_drops.get(sink, 0):
                self.log.warn("events not delivered by a sink", sink=sink, lost=dropped - self._sink_drops.get(sink, 0),
                              total=dropped)
                self._sink_drops[sink] = dropped
        self._check_sensors()

    def _check_sensors(self) -> None:
        """No-Pretend at run time: a sensor that stopped enforcing is a fault (DEGRADED until restart)."""
        for sensor in self.sensors:
            faults = [f for f in sensor.check(self.emit, self._stopping) if f not in self.report.faults]
            if faults:
                self.report.faults += faults
                self._publish("HOOK_ATTACH_FAILED")

    def serve(self) -> None:
        assert self.reader is not None and self._sync is not None
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        old_fd = signal.set_wakeup_fd(wake_w.fileno())
        sel = selectors.DefaultSelector()
        sel.register(self.reader.fileno(), selectors.EVENT_READ, "ring")
        sel.register(self._sync.fileno(), selectors.EVENT_READ, "sync")
        sel.register(wake_r, selectors.EVENT_READ, "signal")
        try:
            while not self._stopping:
                for key, _ in sel.select(timeout=0.1):
                    if key.data == "sync":
                        self._sync.serve(self.resync)
                    elif key.data == "signal":
                        with contextlib.suppress(BlockingIOError):
                            wake_r.recv(4096)
                self._drain_ring()
                for sensor in self.sensors:
                    sensor.poll(self.emit)
                now = time.monotonic()
                self._follow_rule_edits(now)
                self.report_losses(now)
            # Stop deciding first (detach the kernel programs, stop answering fanotify), so nothing is decided
            # after the last drain; then drain a full ring of the smallest records (16 bytes with the header)
            # and report the losses of the last moments.
            for sensor in self.sensors:
                sensor.stop(self.emit)
            self._drain_ring(self.reader.size_bytes // (16 * _RING_BATCH) + 1)
            self._next_loss_check = 0.0
            self.report_losses(time.monotonic())
        finally:
            sel.close()
            signal.set_wakeup_fd(old_fd)
            wake_r.close()
            wake_w.close()

    def stop(self) -> None:
        self._stopping = True

    def _follow_rule_edits(self, now: float) -> None:
        """Every loop turn: resync when any process edited the rules (also one whose SYNC never reached
        the socket, e.g. from another mount namespace), and beat so editors know a daemon is alive."""
        assert self._rule_sync is not None
        try:
            if self._rule_sync.pending() and now >= self._rules_retry_at:
                self.resync(reason_code="RULES_CHANGED")
            self._rule_sync.beat(now)
        except BPFError as err:
            self.log.warn("cannot read or acknowledge rule edits", error=str(err))
        except Exception as err:  # never end the daemon over an edit: what it enforces now stays enforced
            self._rules_retry_at = now + 1.0  # the edit stays unacknowledged (editors: exit 4); retried
            self.log.error("cannot apply a rule edit; the rules applied before stay enforced", error=str(err))

    def resync(self, reason_code: str = "") -> None:
        """The pinned rules changed (or the daemon starts): bring user-space enforcement (fanotify marks) up
        to date. A deny rule fanotify cannot mark (no path on record for the inode) is not enforced: that is
        a DEGRADED posture until it is fixed, never a silent gap."""
        generation = self._rule_sync.generation() if self._rule_sync is not None else 0
        if self.cgroup is not None and self.pins is not None:
            self._exempt_cgroup()
        unmarked: dict[tuple[int, int], str] = {}
        rule_faults: list[str] = []
        for sensor in self.sensors:
            gaps = sensor.resync()
            unmarked |= gaps.unenforced
            if gaps.state_fault is not None:
                rule_faults.append(gaps.state_fault)
            rule_faults += gaps.faults
        self._unenforced = {f"{dev}:{ino}": reason for (ino, dev), reason in unmarked.items()}
        if unmarked:
            rule_faults.insert(0, f"unenforced_inode_rules={len(unmarked)}")
        # the faults of the previous resync are replaced by this one's: the rules they were about changed
        self.report.faults = [f for f in self.report.faults if f not in self._rule_faults] + rule_faults
        self._rule_faults = rule_faults
        gaps = [f for f in rule_faults if not f.startswith("state_file_unreadable")]
        self._publish(reason_code or ("HOOK_ATTACH_FAILED" if gaps else "RECOVERED"))
        if self._rule_sync is not None:
            self._rule_sync.acknowledge(generation)

    # ---- shutdown -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Detach and close everything this daemon created; the pinned maps (the rules) stay."""
        for sensor in self.sensors:
            sensor.close()
        for prog in self.programs:
            with contextlib.suppress(OSError, BPFError):
                prog.close()
        self.programs.clear()
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        for name, m in self.maps.items():
            if self.pins is None or name not in self.pins.maps:
                m.close()
        if self.cgroup is not None:
            removed = self.cgroup.close()
            if removed and self.pins is not None:  # its cgroup is gone: so is the exemption
                for rule_set in self.pins.sets:
                    with contextlib.suppress(BPFError):
                        rule_set.allow_cgroup.delete_elem(self.cgroup.cgid)
            self.cgroup = None
        if self._rule_sync is not None:
            with contextlib.suppress(BPFError):
                self._rule_sync.stopped()
            self._rule_sync = None
        if self.pins is not None:
            self.pins.close()
            self.pins = None
        self.maps.clear()
        remove_runtime()


# What can go wrong at start-up for reasons outside the daemon (kernel, pins, locations): an error line, exit 1.
_STARTUP_ERRORS = (BPFError, AgentCgroupError, UntrustedPathError, PinLayoutMismatch, OSError)


def _capture(fn: Callable[[], None], errors: list[BaseException]) -> None:
    """Run *fn* (in a worker thread); append what it raised to *errors* for the starting thread to raise."""
    try:
        fn()
    except BaseException as err:  # handed to the joining thread, which raises it
        errors.append(err)


def run_daemon(options: RunOptions, *, log_level: str, log_format: str, prog: str,
               stop_after: Callable[[Daemon], bool] | None = None) -> int:
    """The ``run`` command: returns the process exit code (docs/cli.md)."""
    logger = Logger(log_level, log_format)
    tracer = Tracer(logger)
    try:
        sinks = build_sinks(options.log, journal_socket=config.journal_socket())
    except (OSError, ValueError) as err:
        logger.error("cannot open the event sinks", error=str(err))
        return EXIT_FAILED
    if LogTarget.JOURNALD in options.log and not os.path.exists(config.journal_socket()):
        logger.warn("no journald socket: events for journald are lost until it appears",
                    socket=config.journal_socket())
    with tracer.span("daemon.run"):
        try:
            lock = InstanceLock(config.pin_root())
        except (AlreadyRunning, UntrustedPathError, OSError) as err:
            logger.error("cannot start", error=str(err))
            return EXIT_FAILED
        remove_runtime()  # a killed predecessor's status must not speak for this daemon while it starts
        daemon = Daemon(options, logger, tracer, sinks)
        # Installed before start-up so a SIGTERM during loading still ends in a clean shutdown.
        previous = {signum: signal.signal(signum, lambda *_: daemon.stop()) for signum in (signal.SIGTERM,
                                                                                          signal.SIGINT)}
        try:
            started = time.monotonic()
            daemon.start()
            if (options.enforce and options.enforce_gate_mode is GateMode.FAIL_CLOSED
                    and daemon.report.state is Posture.AUDIT_FALLBACK):
                logger.error("enforcement requested but not available (--enforce-gate-mode=fail-closed)",
                             detail=daemon.report.detail)
                return EXIT_ENFORCE_REFUSED
            if daemon.strict_exit:
                logger.error("--strict-degrade: posture degraded at start-up", state=daemon.strict_exit)
                return EXIT_ENFORCE_REFUSED
            logger.debug("start-up done", duration_ms=f"{(time.monotonic() - started) * 1000:.1f}")
            with tracer.span("daemon.event_loop"):
                daemon.serve()
            if daemon.strict_exit:
                logger.error("--strict-degrade: posture degraded", state=daemon.strict_exit)
                return EXIT_ENFORCE_REFUSED
        except _STARTUP_ERRORS as err:
            logger.error("start-up failed", error=str(err))
            return EXIT_FAILED
        finally:
            daemon.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            sinks.flush(2.0)
            sinks.close()
            lock.close()
    return EXIT_OK
