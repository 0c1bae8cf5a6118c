"""Diagnostic logs on stderr and span logs (docs/architecture.md).

Text: ``YYYY-MM-DD HH:MM:SS.mmm [LEVEL] message {k=v, k2=v2}`` in local time. JSON:
``{"timestamp":"YYYY-MM-DDTHH:MM:SSZ","level":"INFO","message":"...","k":"v"}`` in UTC to the second,
every field value a string; a field named ``type`` is written as ``log_type`` so a log line never looks
like an event.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

import msgspec

from pybpfguard.agent.config import env_flag

LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40, "fatal": 50}
_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARN", 40: "ERROR", 50: "FATAL"}


class Logger:
    """Writes one line per record to *stream* (stderr by default); thread-safe."""

    def __init__(self, level: str = "info", fmt: str = "text", stream: IO[str] | None = None) -> None:
        self.threshold = LEVELS[level]
        self.json = fmt == "json"
        self.stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()
        self._encoder = msgspec.json.Encoder()

    def log(self, level: str, message: str, **fields: Any) -> None:
        num = LEVELS[level]
        if num < self.threshold and num < LEVELS["fatal"]:
            return
        now = time.time()
        if self.json:
            record = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "level": _NAMES[num],
                      "message": message}
            for key, value in fields.items():
                record["log_type" if key == "type" else key] = _text(value)
            line = self._encoder.encode(record).decode()
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
            line = f"{stamp} [{_NAMES[num]}] {message}"
            if fields:
                line += " {" + ", ".join(f"{k}={_text(v)}" for k, v in fields.items()) + "}"
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def debug(self, message: str, **fields: Any) -> None:
        self.log("debug", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.log("info", message, **fields)

    def warn(self, message: str, **fields: Any) -> None:
        self.log("warn", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.log("error", message, **fields)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Tracer:
    """Span logs: one trace per CLI invocation or daemon run; off unless ``AEGIS_OTEL_SPANS`` is true."""

    def __init__(self, logger: Logger, enabled: bool | None = None) -> None:
        self.logger = logger
        self.enabled = env_flag("OTEL_SPANS") if enabled is None else enabled
        self.trace_id = secrets.token_hex(16)
        self._stack: list[str] = []

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        span_id = secrets.token_hex(8)
        ids: dict[str, str] = {"span_name": name, "trace_id": self.trace_id, "span_id": span_id}
        if self._stack:
            ids["parent_span_id"] = self._stack[-1]
        self.logger.info("otel_span_start", **ids)
        self._stack.append(span_id)
        start = time.perf_counter()
        try:
            yield
        except BaseException as err:
            self._stack.pop()
            self.logger.info("otel_span_end", **ids, duration_ms=_ms(start), status="error", error=str(err) or
                             type(err).__name__)
            raise
        self._stack.pop()
        self.logger.info("otel_span_end", **ids, duration_ms=_ms(start), status="ok")


def _ms(start: float) -> str:
    return f"{(time.perf_counter() - start) * 1000:.3f}"
