"""``python -m pybpfguard asm`` and ``disasm``: stdin/file in, bytes or hex out, errors on stderr."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = "r0 = 1\nif r1 == 0 goto out\nr0 = 2\nout:\nexit\n"


def _run(*args: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "pybpfguard", *args], input=data, capture_output=True, check=False)


def test_asm_writes_raw_little_endian_bytes_and_disasm_reads_them_back():
    out = _run("asm", "-", data=PROGRAM.encode())
    assert out.returncode == 0 and len(out.stdout) == 32
    back = _run("disasm", data=out.stdout)
    assert back.returncode == 0
    assert back.stdout.decode() == "\tr0 = 1\n\tif r1 == 0 goto L3\n\tr0 = 2\nL3:\n\texit\n"


def test_asm_hex_and_disasm_hex_from_a_file(tmp_path):
    source = tmp_path / "prog.s"
    source.write_text(PROGRAM)
    out = _run("asm", str(source), "--hex", data=b"")
    assert out.stdout.decode().splitlines()[0] == "b7 00 00 00 01 00 00 00"
    listing = tmp_path / "prog.hex"
    listing.write_bytes(out.stdout)
    assert _run("disasm", "--hex", str(listing), data=b"").stdout.decode().endswith("\texit\n")


def test_asm_error_goes_to_stderr_with_line_and_column_and_exit_1():
    out = _run("asm", data=b"r0 = 1\nr0 = frob\n")
    assert out.returncode == 1 and out.stdout == b""
    assert out.stderr.decode().startswith("<stdin>:2:1: ")


def test_disasm_refuses_garbage_unless_lenient():
    garbage = bytes.fromhex("18a35c14def0a5ff9a7e10eed8a42b2f")
    out = _run("disasm", data=garbage)
    assert out.returncode == 1 and b"unknown pseudo src 0xa" in out.stderr
    out = _run("disasm", "--lenient", data=garbage)
    assert out.returncode == 0 and out.stdout.startswith(b"\tr3 = 0x2f2ba4d8ffa5f0de ll")
    assert _run("disasm", data=b"\x95\x00\x00").returncode == 1
