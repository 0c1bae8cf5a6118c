"""Fixtures for the ELF loader tests: the C programs in c/ compiled at test time with clang
(``clang -target bpf -g -O2 -c``) against a vmlinux.h generated from this kernel's BTF by bpftool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

C_DIR = Path(__file__).parent / "c"


def _clang() -> str:
    for name in ("clang-19", "clang"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("clang is not installed (the test command installs clang-19)")


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp dir holding vmlinux.h (``bpftool btf dump file /sys/kernel/btf/vmlinux format c``)."""
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed")
    d = tmp_path_factory.mktemp("elf-build")
    with open(d / "vmlinux.h", "w") as out:
        subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"], stdout=out,
                       check=True)
    return d


@pytest.fixture(scope="session")
def compile_c(build_dir: Path) -> Callable[[str], Path]:
    """compile_c("counter") -> the object built from c/counter.c (cached for the session)."""
    clang = _clang()
    built: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in built:
            out = build_dir / f"{name}.o"
            subprocess.run([clang, "-target", "bpf", "-g", "-O2", "-I", str(build_dir), "-I", str(C_DIR), "-c",
                            str(C_DIR / f"{name}.c"), "-o", str(out)], check=True, capture_output=True)
            built[name] = out
        return built[name]

    return build


def bpftool_json(*args: str) -> object:
    out = subprocess.run(["bpftool", "-j", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def xlated_by_map_name(pinned: Path) -> str:
    """``bpftool prog dump xlated`` of the program pinned at *pinned*, each ``map[id:N]`` replaced by the
    map's kernel name, so two loads of one object compare equal."""
    text = subprocess.run(["bpftool", "prog", "dump", "xlated", "pinned", str(pinned)], check=True,
                          capture_output=True, text=True).stdout

    def name(match: re.Match[str]) -> str:
        info = bpftool_json("map", "show", "id", match.group(1))
        assert isinstance(info, dict)
        return f"map[{info['name']}]"

    return re.sub(r"map\[id:(\d+)\]", name, text)


@pytest.fixture(scope="session")
def bpftool() -> Callable[..., object]:
    """``bpftool(*args)``: bpftool's JSON output (``-j``) for *args*, parsed."""
    return bpftool_json


@pytest.fixture(scope="session")
def xlated() -> Callable[[Path], str]:
    """``xlated(pinned_prog)``: its xlated dump with map ids replaced by map names."""
    return xlated_by_map_name
