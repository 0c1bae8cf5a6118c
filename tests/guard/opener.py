"""Child-side actions for the file guard tests; prints one JSON result line on stdout.

Usage: opener.py open PATH | openat DIR NAME | exec PATH | fexec PATH | uring_open PATH
                 | loop PATH SECONDS | repeat PATH N | until_usr1 PATH
Paths are passed hex-encoded (any bytes survive argv and JSON). Result: {"errno": 0|E} for one action,
{"denied": N, "allowed": M, "other": K} for loops. ``until_usr1`` first prints {"ready": true} after its
first open, then loops until SIGUSR1.
"""

import json
import os
import signal
import sys
import time


def _try(fn) -> int:  # type: ignore[no-untyped-def]
    try:
        fn()
    except OSError as err:
        return err.errno or -1
    return 0


def _open(path: bytes) -> None:
    os.close(os.open(path, os.O_RDONLY))


def main() -> None:
    op, args = sys.argv[1], [bytes.fromhex(a) for a in sys.argv[2:]]
    if op == "open":
        out = {"errno": _try(lambda: _open(args[0]))}
    elif op == "openat":
        dfd = os.open(args[0], os.O_RDONLY | os.O_DIRECTORY)
        out = {"errno": _try(lambda: os.close(os.open(args[1], os.O_RDONLY, dir_fd=dfd)))}
    elif op == "exec":
        out = {"errno": _try(lambda: os.execv(args[0], [args[0]]))}
    elif op == "fexec":
        # O_PATH opens raise no permission event; glibc's fexecve is execveat(fd, "", AT_EMPTY_PATH)
        fd = os.open(args[0], os.O_PATH)
        out = {"errno": _try(lambda: os.execve(fd, [args[0]], dict(os.environ)))}
    elif op == "uring_open":
        from uring import uring_openat  # tests/guard/uring.py, next to this script

        res = uring_openat(args[0])
        if res >= 0:
            os.close(res)
        out = {"errno": -res if res < 0 else 0}
    elif op == "until_usr1":
        stop: list[int] = []
        signal.signal(signal.SIGUSR1, lambda *_: stop.append(1))
        counts = {"denied": 0, "allowed": 0, "other": 0}
        first = True
        while not stop:
            e = _try(lambda: _open(args[0]))
            counts["denied" if e == 1 else "allowed" if e == 0 else "other"] += 1
            if first:
                first = False
                print(json.dumps({"ready": True}), flush=True)
        out = counts
    elif op in ("loop", "repeat"):
        if op == "repeat":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # survive TERM strikes until KILL
        counts = {"denied": 0, "allowed": 0, "other": 0}
        deadline = time.monotonic() + float(args[1]) if op == "loop" else None
        n = 0 if op == "loop" else int(args[1])
        while (deadline is not None and time.monotonic() < deadline) or (deadline is None and n > 0):
            n -= 1
            e = _try(lambda: _open(args[0]))
            counts["denied" if e == 1 else "allowed" if e == 0 else "other"] += 1
        out = counts
    else:
        raise SystemExit(f"unknown op {op}")
    print(json.dumps({"pid": os.getpid(), **out}), flush=True)


if __name__ == "__main__":
    main()
