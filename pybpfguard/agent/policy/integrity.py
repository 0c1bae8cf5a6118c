"""Plain-file integrity for ``policy apply`` (docs/policy.md, "Signed bundles and keys").

``--sha256 HEX``, ``--sha256-file P`` (``sha256sum`` output: its first token), or, when neither is given,
``PYBPFGUARD_POLICY_SHA256`` / ``PYBPFGUARD_POLICY_SHA256_FILE``: the SHA-256 of the whole file (a bundle
included) must match, in any case. Every one given is checked.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

from pybpfguard.agent.config import env
from pybpfguard.agent.policy.model import PolicyError

__all__ = ["check_integrity"]

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_MAX_SHA256_FILE = 1 << 16


def check_integrity(data: bytes, source: str, sha256: str | None, sha256_file: str | None) -> None:
    """Compare the SHA-256 of *data* (a whole policy file; *source* names it) with every hash named: *sha256*
    (hex) and the first token of the file *sha256_file*, or, when both are None, the environment's. Raises
    PolicyError naming the file (or the option) at fault, OSError when *sha256_file* cannot be read."""
    expected: list[tuple[str, str]] = []  # (hex, where it came from)
    if sha256 is None and sha256_file is None:
        sha256, sha256_file = env("POLICY_SHA256") or None, env("POLICY_SHA256_FILE") or None
        origin = ("PYBPFGUARD_POLICY_SHA256", "PYBPFGUARD_POLICY_SHA256_FILE")
    else:
        origin = ("--sha256", "--sha256-file")
    if sha256 is not None:
        expected.append((_expected_hex(sha256.strip(), origin[0]), origin[0]))
    if sha256_file is not None:
        expected.append((_read_sha256_file(sha256_file), f"{origin[1]} {sha256_file}"))
    if not expected:
        return
    actual = hashlib.sha256(data).hexdigest()
    for hex_digest, where in expected:
        if not hmac.compare_digest(hex_digest.lower(), actual):
            raise PolicyError(source, 0, f"SHA-256 mismatch: {where} expects {hex_digest.lower()}, the file's is "
                                         f"{actual}; nothing applied")


def _expected_hex(text: str, where: str, line: int = 0) -> str:
    if not _SHA256_HEX.fullmatch(text):
        raise PolicyError(where, line, f"expected a SHA-256 as 64 hex characters, found {text[:70]!r}")
    return text


def _read_sha256_file(path: str) -> str:
    """The first token of *path* (``sha256sum`` writes ``<hex>  <name>``, with a leading ``\\`` when it
    escaped the name)."""
    with open(Path(path), "rb") as f:
        data = f.read(_MAX_SHA256_FILE)
    tokens = data.split()
    if not tokens:
        raise PolicyError(path, 1, "empty; expected a SHA-256 (64 hex characters, as sha256sum writes it)")
    token = tokens[0].removeprefix(b"\\").decode("ascii", "replace")
    return _expected_hex(token, path, 1)
