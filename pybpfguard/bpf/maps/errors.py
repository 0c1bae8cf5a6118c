"""Map-specific errors. All derive from :class:`~pybpfguard.bpf.errors.BPFError` and pickle."""

from __future__ import annotations

from pybpfguard.bpf.errors import BPFError


class MapSpecError(BPFError, ValueError):
    """A MapSpec the kernel would refuse; ``.map_name``, ``.field`` and the reason in the message."""

    def __init__(self, map_name: str, field: str, reason: str) -> None:
        super().__init__(map_name, field, reason)
        self.map_name = map_name
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"map {self.map_name or '(unnamed)'}: {self.field}: {self.reason}"


class MapIncompatibleError(BPFError):
    """An existing map (pinned, or opened by id) does not match the expected spec.

    ``.where`` (the pin path or ``id N``), ``.field`` (``"type"``, ``"key_size"``, ``"value_size"``,
    ``"max_entries"``, ``"map_flags"``), ``.expected`` and ``.found``.
    """

    def __init__(self, where: str, field: str, expected: object, found: object) -> None:
        super().__init__(where, field, expected, found)
        self.where = where
        self.field = field
        self.expected = expected
        self.found = found

    def __str__(self) -> str:
        return f"map at {self.where} is incompatible: {self.field} is {self.found!r}, expected {self.expected!r}"


class IterationAbortedError(BPFError):
    """Key iteration restarted more often than allowed because keys kept vanishing under it.

    ``.map_name``, ``.yielded`` (distinct keys handed out before giving up), ``.restarts``.
    """

    def __init__(self, map_name: str, yielded: int, restarts: int) -> None:
        super().__init__(map_name, yielded, restarts)
        self.map_name = map_name
        self.yielded = yielded
        self.restarts = restarts

    def __str__(self) -> str:
        return (
            f"map {self.map_name!r}: iteration aborted after {self.restarts} restarts "
            f"({self.yielded} keys yielded): the current key kept being deleted"
        )


class BatchError(BPFError):
    """A batch command stopped part way. ``.cmd``, ``.errno``, ``.done`` (elements processed before the
    failure, as the kernel reports in ``count``), ``.total``, ``.map_name``; the SyscallError is the cause."""

    def __init__(self, map_name: str, cmd: str, errno: int, done: int, total: int) -> None:
        super().__init__(map_name, cmd, errno, done, total)
        self.map_name = map_name
        self.cmd = cmd
        self.errno = errno
        self.done = done
        self.total = total

    def __str__(self) -> str:
        done = f"{self.done} of {self.total} elements"
        return f"map {self.map_name!r}: {self.cmd} stopped after {done} (errno {self.errno})"
