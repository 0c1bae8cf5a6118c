import errno
import os
import pickle
import struct

import pytest

from pybpfguard.bpf import _sys
from pybpfguard.bpf.errors import (
    KeyNotFoundError,
    PermissionDeniedError,
    SyscallError,
    VerifierError,
    from_errno,
)

BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_MAP_TYPE_ARRAY = 2
RET_42 = struct.pack("<BBhi", 0xB7, 0, 0, 42) + struct.pack("<BBhi", 0x95, 0, 0, 0)


def test_errno_maps_to_typed_error_that_keeps_errno_and_command():
    err = from_errno("BPF_MAP_LOOKUP_ELEM", errno.ENOENT)
    assert isinstance(err, KeyNotFoundError) and isinstance(err, KeyError) and isinstance(err, OSError)
    assert err.errno == errno.ENOENT and err.cmd == "BPF_MAP_LOOKUP_ELEM"
    eperm = from_errno("BPF_PROG_LOAD", errno.EPERM)
    assert isinstance(eperm, PermissionDeniedError) and "CAP_BPF" in str(eperm)
    assert "ENOTSUPP" in str(from_errno("BPF_LINK_CREATE", 524))


def test_errors_survive_pickling_with_their_attributes():
    err = pickle.loads(pickle.dumps(from_errno("BPF_MAP_CREATE", errno.E2BIG, hint="h")))
    assert (type(err).__name__, err.errno, err.cmd, err.hint) == ("NoSpaceError", errno.E2BIG, "BPF_MAP_CREATE", "h")
    verr = VerifierError("BPF_PROG_LOAD", errno.EACCES, "log\n", prog_name="p", insn_index=3, summary="s")
    back = pickle.loads(pickle.dumps(verr))
    assert (back.log, back.insn_index, back.prog_name) == ("log\n", 3, "p")


def test_fd_close_is_idempotent_and_detach_hands_over(tmp_path):
    fd = _sys.Fd(os.open(tmp_path, os.O_RDONLY), "dir")
    fd.close()
    fd.close()
    assert fd.closed
    fd2 = _sys.Fd(os.open(tmp_path, os.O_RDONLY))
    raw = fd2.detach()
    os.close(raw)
    with pytest.raises(ValueError):
        _ = fd2.raw


@pytest.mark.kernel
def test_prog_load_and_test_run_return_r0():
    with _sys.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, RET_42, prog_name="ret42") as prog:
        assert _sys.prog_test_run(prog, bytes(64), repeat=10).retval == 42


@pytest.mark.kernel
def test_invalid_program_raises_syscall_error_naming_prog_load():
    with pytest.raises(SyscallError) as info:
        _sys.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, struct.pack("<BBhi", 0x95, 0, 0, 0))
    assert info.value.cmd == "BPF_PROG_LOAD" and info.value.errno == errno.EACCES


@pytest.mark.kernel
def test_pinned_map_reopens_from_a_private_bpffs(bpffs):
    with _sys.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1, map_name="pinme") as m:
        _sys.obj_pin(m, bpffs / "pinme")
    with _sys.obj_get(bpffs / "pinme") as again:
        assert again.raw > 0
    os.unlink(bpffs / "pinme")
