"""The non-UTF-8 rule of docs/events.md for kernel strings.

A kernel string ends at its first NUL. Valid UTF-8 passes through unchanged; otherwise the text has
each invalid sequence replaced by U+FFFD, and a ``<name>_b64`` sibling carries the raw bytes in
standard base64 with padding (RFC 4648 §4). Applies to path, resolved_path, comm, cgroup_path, argv.
"""

from __future__ import annotations

import base64

from msgspec import UNSET, UnsetType


def cut_at_nul(raw: bytes) -> bytes:
    """*raw* up to (not including) its first NUL byte; all of it if there is none."""
    return raw.partition(b"\0")[0]


def text_b64(raw: bytes) -> tuple[str, str | UnsetType]:
    """``(text, b64)`` for NUL-free *raw*: b64 is ``UNSET`` when *raw* is valid UTF-8."""
    try:
        return raw.decode(), UNSET
    except UnicodeDecodeError:
        return raw.decode(errors="replace"), base64.b64encode(raw).decode("ascii")


def argv_b64(args: list[bytes]) -> tuple[list[str], list[str] | UnsetType]:
    """``(argv, argv_b64)``: argv_b64 holds every element's base64 when any element is not UTF-8."""
    try:
        return [a.decode() for a in args], UNSET
    except UnicodeDecodeError:
        return ([a.decode(errors="replace") for a in args],
                [base64.b64encode(a).decode("ascii") for a in args])


def raw_bytes(text: str, b64: str | UnsetType) -> bytes:
    """The original bytes of a (text, b64) pair: the inverse of :func:`text_b64`."""
    if b64 is UNSET:
        return text.encode()
    return base64.b64decode(b64)  # type: ignore[arg-type]
