"""Open and load of a clang-built object of about 2,000 instructions: time in our code apart from the
verifier, against ``bpftool prog loadall`` (libbpf) of the same object in the same run.

The object (generated C: 500 chained calls of a hash-map-updating subprogram in one socket filter, each
with a CO-RE read of ``skb->len``, and a .rodata constant) is compiled once with clang-19 against this
kernel's vmlinux.h. Ours: ``Collection.open`` +
``set_constant`` + ``load`` + ``close`` in this process; the time inside BPF_PROG_LOAD (the verifier) is
measured around the syscall and reported apart. Theirs: the wall time of ``bpftool prog loadall OBJ DIR``
(process start and its verifier included), and a ``bpftool version`` floor for its process start.
Every ``skb->len`` read is a CO-RE relocation (vmlinux.h marks ``struct __sk_buff``
preserve_access_index): 500 of them, resolved by pybpfguard.bpf.elf.core against vmlinux BTF.

Run: ``python3 -m pytest -o addopts="" benchmarks/bench_elf.py --benchmark-columns=min,median,rounds``
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from pybpfguard.bpf import _sys
from pybpfguard.bpf.elf import Collection

ROUNDS = 15
C_DIR = Path(__file__).parents[1] / "tests" / "elf" / "c"
BLOCKS = 500


def _source() -> str:
    body = "\n".join(f"    total = bump(total ^ {i} ^ skb->len);" for i in range(BLOCKS))
    return f"""#include "vmlinux.h"
#include "bpf_defs.h"
const volatile __u32 seed = 1;
struct {{ __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1024); __type(key, __u32); __type(value, __u64); }}
counts SEC(".maps");
static __noinline __u64 mix(__u64 x) {{ return x * 2654435761u; }}
static __noinline __u64 bump(__u32 key)
{{
    __u64 one = 1, *v = bpf_map_lookup_elem(&counts, &key);
    if (v) {{ __sync_fetch_and_add(v, 1); return *v; }}
    bpf_map_update_elem(&counts, &key, &one, 0);
    return 1;
}}
SEC("socket")
int big(struct __sk_buff *skb)
{{
    __u64 total = seed;
{body}
    return mix(total);
}}
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def big_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None or shutil.which("bpftool") is None:
        pytest.skip("needs clang and bpftool")
    d = tmp_path_factory.mktemp("bench-elf")
    with open(d / "vmlinux.h", "w") as out:
        subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"], stdout=out,
                       check=True)
    (d / "big.c").write_text(_source())
    subprocess.run([clang, "-target", "bpf", "-g", "-O2", "-I", str(d), "-I", str(C_DIR), "-c", str(d / "big.c"),
                    "-o", str(d / "big.o")], check=True)
    return d / "big.o"


def test_open_and_load_against_bpftool_loadall(benchmark, big_object, bpffs, monkeypatch) -> None:
    in_kernel: list[float] = []
    real_prog_load = _sys.prog_load

    def timed_prog_load(*args, **kw):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return real_prog_load(*args, **kw)
        finally:
            in_kernel.append(time.perf_counter() - t)

    monkeypatch.setattr(_sys, "prog_load", timed_prog_load)
    totals: list[float] = []
    counts: list[int] = []
    kernel_parts: list[float] = []

    def ours() -> None:
        in_kernel.clear()
        t = time.perf_counter()
        with Collection.open(big_object) as coll:
            coll.set_constant("seed", 3)
            coll.load()
            insns = coll.programs["big"].info().xlated_prog_len_bytes // 8
        totals.append(time.perf_counter() - t)
        kernel_parts.append(sum(in_kernel))
        counts.append(insns)
        assert insns >= 2000

    benchmark.pedantic(ours, rounds=ROUNDS, iterations=1)
    theirs, floor = [], []
    for i in range(ROUNDS):
        t = time.perf_counter()
        subprocess.run(["bpftool", "prog", "loadall", str(big_object), str(bpffs / f"r{i}")], check=True)
        theirs.append(time.perf_counter() - t)
        shutil.rmtree(bpffs / f"r{i}")
        t = time.perf_counter()
        subprocess.run(["bpftool", "version"], check=True, capture_output=True)
        floor.append(time.perf_counter() - t)
    ms = lambda xs: round(statistics.median(xs) * 1e3, 2)  # noqa: E731
    ours_only = [a - b for a, b in zip(totals, kernel_parts, strict=True)]
    benchmark.extra_info.update(
        insns=counts[0], ours_total_ms=ms(totals), ours_verifier_ms=ms(kernel_parts),
        ours_without_verifier_ms=ms(ours_only),
        bpftool_loadall_ms=ms(theirs), bpftool_process_floor_ms=ms(floor),
    )
    print(benchmark.extra_info)
