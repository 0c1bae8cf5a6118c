import os
import threading

import pytest

from pybpfguard.agent import instance


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(instance, "RUN_DIR", tmp_path / "run")
    return tmp_path


def test_second_daemon_on_the_same_pin_root_is_refused_naming_the_holder(run_dir):
    first = instance.InstanceLock(run_dir / "pins")
    try:
        with pytest.raises(instance.AlreadyRunning, match=r"pid \d+.*pins"):
            instance.InstanceLock(run_dir / "pins")
        other = instance.InstanceLock(run_dir / "other-pins")  # another pin root is independent
        other.close()
    finally:
        first.close()
    instance.InstanceLock(run_dir / "pins").close()  # released on close


def test_sync_request_returns_after_the_daemon_applied_it(run_dir):
    server = instance.SyncServer(run_dir / "pins")
    synced = threading.Event()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            server.serve(synced.set)
            stop.wait(0.01)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert instance.request_sync(run_dir / "pins") is True
        assert synced.is_set()
    finally:
        stop.set()
        thread.join()
        server.close()
    assert instance.request_sync(run_dir / "pins") is False  # no daemon: nothing to sync


def test_runtime_status_of_a_killed_predecessor_never_speaks_for_the_lock_holder(run_dir, monkeypatch):
    from pybpfguard.agent import runtime

    monkeypatch.setenv("PYBPFGUARD_PIN_ROOT", str(run_dir / "pins"))
    lock = instance.InstanceLock(run_dir / "pins")
    try:
        stale = runtime.RuntimeStatus(pid=_reaped_pid(), mode="enforce", state="ENFORCE", detail="file=fanotify",
                                      enforce_capable=True, hooks={}, agent_cgid=7)
        runtime.write_runtime(stale)
        assert runtime.read_runtime() is None  # the lock is held, but not by the writer of that file
        runtime.write_runtime(runtime.RuntimeStatus(**{**msgspec_to_dict(stale), "pid": os.getpid()}))
        assert runtime.read_runtime().pid == os.getpid()
    finally:
        lock.close()
    assert runtime.read_runtime() is None  # nobody holds the lock any more


def _reaped_pid() -> int:
    """The pid of a child that has exited and been reaped: a process that no longer exists (a fixed number
    such as 999999 can be a live process where pid_max is large)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def msgspec_to_dict(obj):
    import msgspec

    return msgspec.structs.asdict(obj)
