"""tracefs: where it is mounted and the ids of its events (Documentation/trace/events.rst).

A tracepoint's perf event id is the number in ``<tracefs>/events/<category>/<name>/id``. The mount is
found in /proc/self/mountinfo (``tracefs``, else ``debugfs`` + ``/tracing``), never assumed.
"""

from __future__ import annotations

from pathlib import Path

from pybpfguard.bpf.errors import InvalidArgumentError, NotSupportedError

_MOUNTINFO = "/proc/self/mountinfo"


def tracefs_root(mountinfo: str = _MOUNTINFO) -> Path:
    """The tracefs directory. Raises NotSupportedError when neither tracefs nor debugfs is mounted."""
    debugfs = None
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype = right.split(" ", 1)[0]
            mount_point = Path(left.split()[4])
            if fstype == "tracefs":
                return mount_point
            if fstype == "debugfs" and debugfs is None:
                debugfs = mount_point / "tracing"
    if debugfs is not None and debugfs.is_dir():
        return debugfs
    raise NotSupportedError(
        "tracepoint events", "4.1", "tracefs is not mounted (mount -t tracefs tracefs /sys/kernel/tracing)"
    )


def tracepoint_id(category: str, name: str) -> int:
    """The perf event id of tracepoint ``<category>/<name>``. Raises NotSupportedError naming the event
    when tracefs is not mounted or this kernel has no such event."""
    for part in (category, name):
        if not part or "/" in part or part in (".", ".."):
            raise InvalidArgumentError(f"tracepoint {category!r}/{name!r}: category and name must be plain names")
    root = tracefs_root()
    path = root / "events" / category / name / "id"
    try:
        return int(path.read_text())
    except FileNotFoundError as err:
        raise NotSupportedError(f"tracepoint {category}/{name}", "", f"no such event: {path} is missing") from err
