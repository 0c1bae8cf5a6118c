"""Key iteration survives deletes under it: no key twice, none present throughout skipped, always ends."""

from __future__ import annotations

import random
import threading

import pytest

from pybpfguard.bpf.layout import Layout, Scalar
from pybpfguard.bpf.maps import IterationAbortedError, Map, MapFlags, MapSpec, MapType

pytestmark = pytest.mark.kernel

T = MapType
U32 = Scalar("u32")
LPM_KEY = Layout("lpm_v4", [("prefixlen", "u32"), ("addr", "be32")])
N = 500


def _hash() -> tuple[MapSpec, list]:
    return MapSpec(T.BPF_MAP_TYPE_HASH, 1024, key_layout=U32, value_layout=U32, name="walk"), list(range(N))


def _lpm() -> tuple[MapSpec, list]:
    spec = MapSpec(
        T.BPF_MAP_TYPE_LPM_TRIE,
        1024,
        key_layout=LPM_KEY,
        value_layout=U32,
        name="walk",
        flags=MapFlags.BPF_F_NO_PREALLOC,
    )
    return spec, [LPM_KEY.value(prefixlen=32, addr=0x0A000000 + i) for i in range(N)]


@pytest.mark.parametrize("make", [_hash, _lpm], ids=["hash", "lpm_trie"])
def test_deleting_every_other_key_while_walking_yields_each_key_once_and_ends(make):
    spec, keys = make()
    with Map.create(spec) as m:
        for i, k in enumerate(keys):
            m.update_elem(k, i)
        walked = []
        for k in m:
            walked.append(k)
            if m.lookup_elem(k) % 2:
                m.delete_elem(k)  # the kernel's next get_next_key(k) restarts from the first key
        assert len(walked) == len(set(walked)) == N
        assert sorted(m.lookup_elem(k) for k in m) == list(range(0, N, 2))


def test_draining_a_hash_while_walking_visits_every_key_once():
    spec, keys = _hash()
    with Map.create(spec) as m:
        m.update_batch(keys, keys)
        walked = []
        for k in m:
            walked.append(k)
            m.delete_elem(k)
        assert sorted(walked) == keys and list(m.keys()) == []


def test_keys_deleted_by_another_thread_never_cause_duplicates_or_lose_surviving_keys():
    spec, keys = _hash()
    doomed = set(random.Random(7).sample(keys, N // 2))
    with Map.create(spec) as m:
        m.update_batch(keys, keys)
        stop = threading.Event()

        def deleter() -> None:
            for k in doomed:
                m.delete_elem(k)
            stop.set()

        walked = []
        thread = threading.Thread(target=deleter)
        thread.start()
        try:
            for k in m:
                walked.append(k)
        finally:
            thread.join()
        assert len(walked) == len(set(walked))
        assert set(keys) - doomed <= set(walked)


def test_restarts_beyond_the_limit_abort_with_a_typed_error_instead_of_looping():
    spec, keys = _hash()
    with Map.create(spec) as m:
        m.update_batch(keys, keys)
        with pytest.raises(IterationAbortedError) as info:
            for n, k in enumerate(m.keys(max_restarts=0)):
                if n % 2:
                    m.delete_elem(k)
        assert info.value.restarts == 1 and info.value.map_name == "walk"
