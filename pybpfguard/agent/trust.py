"""Directories and files the agent trusts: only what no other local user can change.

The pin root, the state directory and the run directory hold what decides enforcement (pinned rule maps,
``deny.db``, the instance lock). bpffs is mounted 1777 on many hosts, so any user can create
``/sys/fs/bpf/pybpfguard`` first and later rename or replace what the agent pins there. The rule
(docs/architecture.md, "Trusted locations"): a trusted directory is owned by the agent's user and not
writable by group or other; every directory above it is owned by root (or the agent's user) and either
not writable by group or other, or sticky (as /tmp and bpffs are), which stops other users from renaming
a root-owned entry in it; no component of the path, as given, is a symlink owned by another user.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pybpfguard.agent.errors import AgentError

__all__ = ["UntrustedPathError", "require_private_dir", "require_private_file"]

_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


class UntrustedPathError(AgentError, RuntimeError):
    """A location the agent would trust can be changed by another user: ``.path`` and ``.reason``."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}; refusing to use it (it must be owned by uid {os.geteuid()} and "
                         "not writable by group or other; remove it or fix its owner and mode)")
        self.path = path
        self.reason = reason


def _owners() -> frozenset[int]:
    return frozenset({0, os.geteuid()})


def _check_symlinks(path: Path) -> None:
    """Every symlink met on *path* as given must belong to a trusted owner (a user's link can be repointed).

    Walked as the kernel resolves it: a ``..`` applies to where the components before it led, after their
    symlinks (``a/link/..`` is the parent of the link's target, not ``a``)."""
    current = Path(path.anchor)
    for part in path.parts[1:]:
        if part == "..":
            current = current.parent
            continue
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return  # the rest is created by the caller, as directories it owns
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid not in _owners():
                raise UntrustedPathError(path, f"{current} is a symlink owned by uid {st.st_uid}")
            current = Path(os.path.realpath(current))


def _check_ancestors(real: Path) -> None:
    for parent in reversed(real.parents):
        try:
            st = os.stat(parent)
        except FileNotFoundError:
            return  # created below by the caller, owned by it
        if st.st_uid not in _owners():
            raise UntrustedPathError(real, f"its parent {parent} is owned by uid {st.st_uid}")
        if st.st_mode & _WRITABLE_BY_OTHERS and not st.st_mode & stat.S_ISVTX:
            raise UntrustedPathError(real, f"its parent {parent} is writable by other users "
                                           f"(mode {stat.S_IMODE(st.st_mode):04o}, not sticky)")


def _check_own(path: Path, st: os.stat_result, kind: str) -> None:
    if st.st_uid != os.geteuid():
        raise UntrustedPathError(path, f"{kind} owned by uid {st.st_uid}")
    if st.st_mode & _WRITABLE_BY_OTHERS:
        raise UntrustedPathError(path, f"{kind} writable by group or other (mode {stat.S_IMODE(st.st_mode):04o})")


def require_private_dir(path: Path, *, create: bool = True) -> Path:
    """Check (creating it 0700 first when *create* and it is missing) that *path* is a directory only this
    user can change; returns it. Raises UntrustedPathError naming the path and what is wrong,
    FileNotFoundError when it is missing and not *create*, NotADirectoryError when it is something else."""
    path = Path(path)
    if not path.is_absolute():  # made absolute with its '..' kept: only the kernel's resolution may apply them
        path = Path.cwd() / path
    _check_symlinks(path)
    real = Path(os.path.realpath(path))
    _check_ancestors(real)
    if create and not real.exists():
        real.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_symlinks(path)  # created by us, but check the result as any other
        _check_ancestors(real)
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such directory") from None
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{path}: not a directory")
    _check_own(path, st, "directory")
    return path


def require_private_file(path: Path) -> os.stat_result:
    """*path* (in a directory already checked) is not a symlink, is owned by this user and is not writable by
    group or other; returns its stat. Raises UntrustedPathError, FileNotFoundError."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UntrustedPathError(path, "a symlink where a file of the agent's belongs")
    _check_own(path, st, "file")
    return st
