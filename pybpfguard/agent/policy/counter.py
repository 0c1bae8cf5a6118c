"""The anti-rollback counter ``version_counter`` (docs/policy.md, "Signed bundles and keys").

A state file (``PYBPFGUARD_VERSION_COUNTER_PATH`` overrides its place) holding the ``policy_version`` of the
last signed bundle applied: a decimal number below 2**64, then a newline. A missing file reads as 0; a
file that is not a number is an error, never 0, since reading it as 0 would let an old bundle be replayed.
"""

from __future__ import annotations

import re
from pathlib import Path

from pybpfguard.agent.config import state_file
from pybpfguard.agent.policy.model import PolicyError
from pybpfguard.agent.statefiles import write_atomic
from pybpfguard.agent.trust import require_private_dir, require_private_file

__all__ = ["counter_path", "read_counter", "write_counter"]

_DECIMAL = re.compile(rb"[0-9]{1,20}")
_MAX = (1 << 64) - 1


def counter_path() -> Path:
    return state_file("version_counter")


def read_counter(path: Path | None = None) -> int:
    """The counter (0 when the file does not exist). Raises PolicyError naming the file when it holds
    anything but a decimal u64 (surrounding blanks and newlines aside), UntrustedPathError when another user
    could have written it, OSError when it cannot be read."""
    path = counter_path() if path is None else path
    try:
        require_private_dir(path.parent, create=False)
        require_private_file(path)
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    text = data.strip()
    if not _DECIMAL.fullmatch(text) or int(text) > _MAX:
        raise PolicyError(str(path), 1, f"the anti-rollback counter must be a decimal number below 2**64, "
                                        f"found {data[:40]!r}; fix or remove the file (removing it lets any "
                                        "older signed bundle be applied again)")
    return int(text)


def write_counter(value: int, path: Path | None = None) -> None:
    """Atomically set the counter to *value* (0..2**64-1; ValueError otherwise). Raises OSError,
    UntrustedPathError."""
    if not 0 <= value <= _MAX:
        raise ValueError(f"version counter {value} is outside 0..2**64-1")
    write_atomic(counter_path() if path is None else path, b"%d\n" % value, mode=0o600)
