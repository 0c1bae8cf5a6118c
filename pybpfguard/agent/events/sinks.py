"""``--log=stdout|journald|both`` (comma lists allowed, docs/cli.md) -> the set of sinks events go to.

Every event type follows ``--log`` (docs/events.md; AegisBPF differs). ``syslog`` is recognised so
the option parses as the reference says, but this module cannot build that sink yet.
"""

from __future__ import annotations

import enum
from typing import Protocol

import msgspec

from pybpfguard.agent.errors import AgentError
from pybpfguard.agent.events.stdout import StdoutSink


class LogTarget(enum.Enum):
    STDOUT = "stdout"
    JOURNALD = "journald"
    SYSLOG = "syslog"


class LogOptionError(AgentError, ValueError):
    """A bad ``--log`` value: ``.value`` is the whole option, the message names the bad item."""

    def __init__(self, value: str, what: str) -> None:
        super().__init__(f"--log={value}: {what}")
        self.value = value


class Sink(Protocol):
    def emit(self, event: msgspec.Struct) -> None: ...
    def emit_many(self, events: list[msgspec.Struct]) -> None: ...
    def flush(self, timeout_s: float = ...) -> bool: ...
    def close(self) -> None: ...


_WORDS = {"stdout": (LogTarget.STDOUT,), "journald": (LogTarget.JOURNALD,),
          "both": (LogTarget.STDOUT, LogTarget.JOURNALD), "syslog": (LogTarget.SYSLOG,)}


def parse_log(value: str) -> frozenset[LogTarget]:
    """``"stdout"``, ``"journald"``, ``"both"``, ``"syslog"`` or a comma list of them -> targets.

    Raises :class:`LogOptionError` for an empty or unknown item (argparse turns it into exit 2).
    """
    targets: set[LogTarget] = set()
    for item in value.split(","):
        word = item.strip().lower()
        if word not in _WORDS:
            raise LogOptionError(value, f"unknown sink {item!r} (expected stdout, journald, both or syslog)")
        targets.update(_WORDS[word])
    return frozenset(targets)


class FanOut:
    """Sends every event to each sink in *sinks* (taken: :meth:`close` closes them)."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    def emit(self, event: msgspec.Struct) -> None:
        for sink in self.sinks:
            sink.emit(event)

    def emit_many(self, events: list[msgspec.Struct]) -> None:
        for sink in self.sinks:
            sink.emit_many(events)

    def flush(self, timeout_s: float = 1.0) -> bool:
        return all([sink.flush(timeout_s) for sink in self.sinks])

    def dropped(self) -> dict[str, int]:
        """Events each sink could not deliver so far, by sink class name (its ``dropped_events``)."""
        return {type(sink).__name__: getattr(sink, "dropped_events", 0) for sink in self.sinks}

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def build_sinks(targets: frozenset[LogTarget], *, stdout_fd: int = 1,
                journal_socket: str = "/run/systemd/journal/socket") -> FanOut:
    """The sinks for *targets*, stdout first. Raises :class:`LogOptionError` for ``syslog``."""
    if LogTarget.SYSLOG in targets:
        raise LogOptionError("syslog", "the syslog sink (docs/events.md) is not built yet")
    sinks: list[Sink] = []
    if LogTarget.STDOUT in targets:
        sinks.append(StdoutSink(stdout_fd))
    if LogTarget.JOURNALD in targets:
        from pybpfguard.agent.events.journald import JournaldSink  # only --log=journald|both pays for it

        sinks.append(JournaldSink(journal_socket))
    return FanOut(sinks)
